//! Copies from a mounted directory (host_path and volume_claim connections) with the same
//! semantics as downloads: the same entries and globs, each file landed under a hidden temporary
//! name and renamed, a missing source reported as missing, nothing written outside the
//! destination, and nothing read outside the mount (cap-std refuses symlinks that leave it).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Instant, SystemTime},
};

use cap_std::{ambient_authority, fs::Dir};
use futures::{StreamExt, stream};

use crate::{
    Config, Entry, Error, ErrorKind, Event, Events, ObjectError, Summary, emit,
    landing::{open_part, part_name},
    object,
    path::{Parents, local_path, under},
    select::globs,
};

/// What to copy.
#[derive(Debug, Clone, Default)]
pub struct Copy {
    /// The mounted directory (the connection's `mountPath`).
    pub source: PathBuf,
    /// What to copy, relative to `source`.
    pub entries: Vec<Entry>,
    /// Only paths (relative to their entry) matching one of these globs; all when empty.
    pub include: Vec<String>,
    /// Never paths matching one of these globs.
    pub exclude: Vec<String>,
}

struct Job {
    /// Relative to the source.
    from: PathBuf,
    /// Relative to the destination.
    path: PathBuf,
    size: u64,
    modified: Option<SystemTime>,
}

enum Outcome {
    Copied(u64),
    Skipped,
}

/// Copies `request` into `destination`; see [`crate::download`] for the contract.
pub async fn copy(
    request: &Copy,
    destination: &Path,
    config: &Config,
    events: &Events,
) -> Result<Summary, Error> {
    let started = Instant::now();
    let config = &*crate::fitted(config);
    let (request, destination, events_out) =
        (request.clone(), destination.to_path_buf(), events.clone());
    let planned = tokio::task::spawn_blocking(move || plan(&request, &destination))
        .await
        .map_err(|error| Error {
            failures: vec![object(
                ErrorKind::Io,
                "",
                format!("planning stopped: {error}"),
            )],
            summary: Summary::default(),
        })?;
    let (source, dir, jobs, mut failures) = match planned {
        Ok(planned) => planned,
        Err(failure) => {
            return Err(Error {
                failures: vec![failure],
                summary: Summary::default(),
            });
        }
    };
    let parents = Arc::new(Parents::new(dir));
    let outcomes: Vec<(Job, Result<Outcome, ObjectError>)> = stream::iter(jobs)
        .map(|job| {
            let (source, parents, events) = (source.clone(), parents.clone(), events_out.clone());
            async move {
                let from = job.from.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let outcome = copy_one(&source, &parents, &job, &events);
                    let key = job.from.display().to_string();
                    match outcome {
                        Ok(Outcome::Copied(_)) => emit(&events, Event::Done { key }),
                        Ok(Outcome::Skipped) => emit(&events, Event::Skipped { key }),
                        Err(_) => {}
                    }
                    (job, outcome)
                })
                .await;
                match result {
                    Ok(done) => done,
                    Err(error) => (
                        Job {
                            from: from.clone(),
                            path: from.clone(),
                            size: 0,
                            modified: None,
                        },
                        Err(object(
                            ErrorKind::Io,
                            &from.display().to_string(),
                            format!("the copy stopped: {error}"),
                        )),
                    ),
                }
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    let mut summary = Summary::default();
    for (_, outcome) in outcomes {
        match outcome {
            Ok(Outcome::Copied(bytes)) => {
                summary.objects += 1;
                summary.bytes += bytes;
            }
            Ok(Outcome::Skipped) => summary.skipped += 1,
            Err(failure) => failures.push(failure),
        }
    }
    summary.finish(failures, started)
}

type Planned = (Arc<Dir>, Arc<Dir>, Vec<Job>, Vec<ObjectError>);

fn plan(request: &Copy, destination: &Path) -> Result<Planned, ObjectError> {
    let shown = |relative: &Path| request.source.join(relative).display().to_string();
    let source = Dir::open_ambient_dir(&request.source, ambient_authority()).map_err(|error| {
        object(
            ErrorKind::NotFound,
            &request.source.display().to_string(),
            format!("cannot open the mounted directory (is the volume mounted?): {error}"),
        )
    })?;
    std::fs::create_dir_all(destination)
        .and_then(|()| Dir::open_ambient_dir(destination, ambient_authority()))
        .map(|_| ())
        .map_err(|error| {
            object(
                ErrorKind::Io,
                &destination.display().to_string(),
                format!("cannot create the destination: {error}"),
            )
        })?;
    let dir = Dir::open_ambient_dir(destination, ambient_authority()).map_err(|error| {
        object(
            ErrorKind::Io,
            &destination.display().to_string(),
            format!("cannot open the destination: {error}"),
        )
    })?;
    let (include, exclude) = match (globs(&request.include), globs(&request.exclude)) {
        (Ok(include), Ok(exclude)) => (include, exclude),
        (Err(error), _) | (_, Err(error)) => return Err(object(ErrorKind::NotFound, "", error)),
    };
    let mut jobs = Vec::new();
    let mut failures = Vec::new();
    for entry in &request.entries {
        // `Path`: a file if it is one, else a directory, as the mount says.
        let (from, to, file) = match entry {
            Entry::File { from, to } => (from, to, Some(true)),
            Entry::Dir { from, to } => (from, to, Some(false)),
            Entry::Path { from, to } => (from, to, None),
        };
        let relative = if from.trim_matches('/').is_empty() {
            Ok(PathBuf::new())
        } else {
            local_path(from.trim_start_matches('/'))
        };
        let relative = match relative {
            Ok(relative) => relative,
            Err(error) => {
                failures.push(object(
                    ErrorKind::HostileKey,
                    from,
                    format!("refused: the path {error}"),
                ));
                continue;
            }
        };
        let at = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative.as_path()
        };
        // `metadata` follows symlinks, but only inside the mount: cap-std refuses the rest.
        let meta = match source.metadata(at) {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                failures.push(object(
                    ErrorKind::NotFound,
                    &shown(&relative),
                    "does not exist".to_owned(),
                ));
                continue;
            }
            Err(error) => {
                failures.push(object(
                    ErrorKind::Denied,
                    &shown(&relative),
                    format!("cannot read it: {error}"),
                ));
                continue;
            }
        };
        if file.unwrap_or(meta.is_file()) {
            if meta.is_dir() {
                failures.push(object(
                    ErrorKind::NotFound,
                    &shown(&relative),
                    "is a directory, not a file: pull it as a directory (dirs)".to_owned(),
                ));
                continue;
            }
            match local_path(to) {
                Ok(path) => jobs.push(Job {
                    from: relative,
                    path,
                    size: meta.len(),
                    modified: meta.modified().ok().map(|time| time.into_std()),
                }),
                Err(error) => failures.push(object(
                    ErrorKind::HostileKey,
                    &shown(&relative),
                    format!("destination `{to}` {error}"),
                )),
            }
            continue;
        }
        if !meta.is_dir() {
            failures.push(object(
                ErrorKind::NotFound,
                &shown(&relative),
                "is a file, not a directory: pull it as a file (files)".to_owned(),
            ));
            continue;
        }
        let mut pending = vec![PathBuf::new()];
        while let Some(below) = pending.pop() {
            let at = relative.join(&below);
            let listing = if at.as_os_str().is_empty() {
                source.entries()
            } else {
                source.read_dir(&at)
            };
            let listing = match listing {
                Ok(listing) => listing,
                Err(error) => {
                    failures.push(object(
                        ErrorKind::Denied,
                        &shown(&relative.join(&below)),
                        format!("cannot list it: {error}"),
                    ));
                    continue;
                }
            };
            for item in listing.flatten() {
                let name = item.file_name();
                let inner = below.join(&name);
                let Some(text) = inner.to_str() else {
                    failures.push(object(
                        ErrorKind::HostileKey,
                        &shown(&relative.join(&inner)),
                        "refused: the name is not UTF-8".to_owned(),
                    ));
                    continue;
                };
                let kind = match item.file_type() {
                    Ok(kind) => kind,
                    Err(_) => continue,
                };
                // Directories are walked, symlinked ones are not (no loops, no escapes).
                if kind.is_dir() {
                    pending.push(inner);
                    continue;
                }
                let matched = include.as_ref().is_none_or(|set| set.is_match(text))
                    && !exclude.as_ref().is_some_and(|set| set.is_match(text));
                if !matched {
                    continue;
                }
                let from = relative.join(&inner);
                let meta = match source.metadata(&from) {
                    Ok(meta) if meta.is_file() => meta,
                    Ok(_) => continue,
                    Err(error) => {
                        failures.push(object(
                            ErrorKind::HostileKey,
                            &shown(&from),
                            format!("refused: {error} (a symlink that leaves the mount?)"),
                        ));
                        continue;
                    }
                };
                match local_path(text).and_then(|path| under(to, &path)) {
                    Ok(path) => jobs.push(Job {
                        from,
                        path,
                        size: meta.len(),
                        modified: meta.modified().ok().map(|time| time.into_std()),
                    }),
                    Err(error) => failures.push(object(
                        ErrorKind::HostileKey,
                        &shown(&from),
                        format!("refused: the path {error}"),
                    )),
                }
            }
        }
    }
    Ok((Arc::new(source), Arc::new(dir), jobs, failures))
}

fn copy_one(
    source: &Dir,
    parents: &Parents,
    job: &Job,
    events: &Events,
) -> Result<Outcome, ObjectError> {
    let key = job.from.display().to_string();
    let fail = |kind: ErrorKind, message: String| object(kind, &key, message);
    let (dir, name) = parents
        .of(&job.path)
        .map_err(|message| fail(ErrorKind::HostileKey, message))?;
    let dir = &dir;
    // A file already landed by an earlier run has the source's size and modification time.
    if let Ok(meta) = dir.symlink_metadata(&name)
        && meta.is_file()
        && meta.len() == job.size
        && job.modified.is_some()
        && meta.modified().ok().map(|time| time.into_std()) == job.modified
    {
        return Ok(Outcome::Skipped);
    }
    emit(
        events,
        Event::Started {
            key: key.clone(),
            size: job.size,
        },
    );
    let temporary_path = part_name(&name.to_string_lossy());
    let mut options = cap_std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    let (file, mut temporary) = open_part(dir, &temporary_path, &options, true)
        .map_err(|failure| fail(failure.kind, failure.message))?;
    let mut reader = source
        .open(&job.from)
        .map_err(|error| fail(ErrorKind::Denied, format!("cannot open it: {error}")))?
        .into_std();
    let mut file = file.into_std();
    let bytes = std::io::copy(&mut reader, &mut file)
        .map_err(|error| fail(ErrorKind::Io, format!("copy failed: {error}")))?;
    if bytes != job.size {
        return Err(fail(
            ErrorKind::Corrupt,
            format!(
                "changed while copying: {bytes} bytes read, {} expected",
                job.size
            ),
        ));
    }
    emit(events, Event::Bytes(bytes));
    if let Some(modified) = job.modified {
        file.set_modified(modified)
            .map_err(|error| fail(ErrorKind::Io, format!("cannot set its time: {error}")))?;
    }
    file.sync_all()
        .map_err(|error| fail(ErrorKind::Io, format!("cannot sync it: {error}")))?;
    dir.rename(&temporary_path, dir, &name).map_err(|error| {
        fail(
            ErrorKind::HostileKey,
            format!("cannot land it at {}: {error}", job.path.display()),
        )
    })?;
    temporary.armed = false;
    Ok(Outcome::Copied(bytes))
}
