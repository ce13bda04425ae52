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
use globset::GlobSet;

use crate::{
    Config, Entry, Error, ErrorKind, Event, Events, MountCopy, ObjectError, Summary,
    config::fitted,
    event::emit,
    landing::{open_part, part_name},
    path::{Parents, local_path, under},
    retry::io_kind,
    select::globs,
    space::Space,
};

/// One file to copy, as planning found it.
struct FileToCopy {
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
    request: &MountCopy,
    destination: &Path,
    config: &Config,
    events: &Events,
) -> Result<Summary, Error> {
    let started = Instant::now();
    let config = &*fitted(config, false);
    let space = Arc::new(Space::measure(destination));
    let (request, target, events_out) =
        (request.clone(), destination.to_path_buf(), events.clone());
    let planned = tokio::task::spawn_blocking(move || plan(&request, &target))
        .await
        .map_err(|error| Error {
            failures: vec![ObjectError::new(
                ErrorKind::Io,
                "",
                format!("planning stopped: {error}"),
            )],
            summary: Box::default(),
        })?;
    let (source, dir, jobs, mut failures) = match planned {
        Ok(planned) => planned,
        Err(failure) => {
            return Err(Error {
                failures: vec![failure],
                summary: Box::default(),
            });
        }
    };
    let parents = Arc::new(Parents::new(dir));
    let outcomes: Vec<(FileToCopy, Result<Outcome, ObjectError>)> = stream::iter(jobs)
        .map(|job| {
            let (source, parents, events) = (source.clone(), parents.clone(), events_out.clone());
            let space = space.clone();
            async move {
                let from = job.from.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let outcome = copy_one(&source, &parents, &space, &job, &events);
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
                        FileToCopy {
                            from: from.clone(),
                            path: from.clone(),
                            size: 0,
                            modified: None,
                        },
                        Err(ObjectError::new(
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
    space.settle(destination, &mut failures);
    summary.finish(failures, started)
}

type Planned = (Arc<Dir>, Arc<Dir>, Vec<FileToCopy>, Vec<ObjectError>);

fn plan(request: &MountCopy, destination: &Path) -> Result<Planned, ObjectError> {
    let (source, dir) = open(request, destination)?;
    let (include, exclude) = match (globs(&request.include), globs(&request.exclude)) {
        (Ok(include), Ok(exclude)) => (include, exclude),
        (Err(error), _) | (_, Err(error)) => {
            return Err(ObjectError::new(ErrorKind::NotFound, "", error));
        }
    };
    let mount = Mount {
        request,
        source: &source,
        include: &include,
        exclude: &exclude,
    };
    let mut planned = Plan::default();
    for entry in &request.entries {
        mount.entry(entry, &mut planned);
    }
    Ok((
        Arc::new(source),
        Arc::new(dir),
        planned.jobs,
        planned.failures,
    ))
}

/// The mounted directory and the destination, opened as the sandboxes every path goes through.
fn open(request: &MountCopy, destination: &Path) -> Result<(Dir, Dir), ObjectError> {
    let source = Dir::open_ambient_dir(&request.source, ambient_authority()).map_err(|error| {
        ObjectError::new(
            ErrorKind::NotFound,
            &request.source.display().to_string(),
            format!("cannot open the mounted directory (is the volume mounted?): {error}"),
        )
    })?;
    std::fs::create_dir_all(destination).map_err(|error| {
        ObjectError::new(
            ErrorKind::Io,
            &destination.display().to_string(),
            format!("cannot create the destination: {error}"),
        )
    })?;
    let dir = Dir::open_ambient_dir(destination, ambient_authority()).map_err(|error| {
        ObjectError::new(
            ErrorKind::Io,
            &destination.display().to_string(),
            format!("cannot open the destination: {error}"),
        )
    })?;
    Ok((source, dir))
}

/// What planning found: the files to copy, and what cannot be.
#[derive(Default)]
struct Plan {
    jobs: Vec<FileToCopy>,
    failures: Vec<ObjectError>,
}

/// The mounted directory a copy reads, and which files of a directory it keeps.
struct Mount<'a> {
    request: &'a MountCopy,
    source: &'a Dir,
    include: &'a Option<GlobSet>,
    exclude: &'a Option<GlobSet>,
}

impl Mount<'_> {
    /// A path under the mount, as messages name it.
    fn shown(&self, relative: &Path) -> String {
        self.request.source.join(relative).display().to_string()
    }

    /// One entry: a file, a directory, or (`Path`) whichever the mount says it is.
    fn entry(&self, entry: &Entry, plan: &mut Plan) {
        let (from, to, file) = match entry {
            Entry::File { from, to } => (from, to, Some(true)),
            Entry::Dir { from, to } => (from, to, Some(false)),
            Entry::Path { from, to } => (from, to, None),
            Entry::Pinned(pinned) => {
                plan.failures.push(ObjectError::new(
                    ErrorKind::NotFound,
                    &pinned.key,
                    "a pinned object is an S3 object; a mount has no versions to pin".to_owned(),
                ));
                return;
            }
        };
        let relative = if from.trim_matches('/').is_empty() {
            Ok(PathBuf::new())
        } else {
            local_path(from.trim_start_matches('/'))
        };
        let relative = match relative {
            Ok(relative) => relative,
            Err(error) => {
                plan.failures.push(ObjectError::new(
                    ErrorKind::HostileKey,
                    from,
                    format!("refused: the path {error}"),
                ));
                return;
            }
        };
        let at = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative.as_path()
        };
        // `metadata` follows symlinks, but only inside the mount: cap-std refuses the rest.
        let meta = match self.source.metadata(at) {
            Ok(meta) => meta,
            Err(error) => {
                let (kind, message) = if error.kind() == std::io::ErrorKind::NotFound {
                    (ErrorKind::NotFound, "does not exist".to_owned())
                } else {
                    (ErrorKind::Denied, format!("cannot read it: {error}"))
                };
                plan.failures
                    .push(ObjectError::new(kind, &self.shown(&relative), message));
                return;
            }
        };
        match (file.unwrap_or(meta.is_file()), meta.is_dir()) {
            (true, true) => plan.failures.push(ObjectError::new(
                ErrorKind::NotFound,
                &self.shown(&relative),
                "is a directory, not a file: pull it as a directory (dirs)".to_owned(),
            )),
            (true, false) => match local_path(to) {
                Ok(path) => plan.jobs.push(FileToCopy {
                    from: relative,
                    path,
                    size: meta.len(),
                    modified: meta.modified().ok().map(|time| time.into_std()),
                }),
                Err(error) => plan.failures.push(ObjectError::new(
                    ErrorKind::HostileKey,
                    &self.shown(&relative),
                    format!("destination `{to}` {error}"),
                )),
            },
            (false, false) => plan.failures.push(ObjectError::new(
                ErrorKind::NotFound,
                &self.shown(&relative),
                "is a file, not a directory: pull it as a file (files)".to_owned(),
            )),
            (false, true) => self.walk(&relative, to, plan),
        }
    }

    /// Every file under `relative` that the globs keep, landing under `to`. Directories are
    /// walked, symlinked ones are not (no loops, no escapes).
    fn walk(&self, relative: &Path, to: &str, plan: &mut Plan) {
        let mut pending = vec![PathBuf::new()];
        while let Some(below) = pending.pop() {
            let at = relative.join(&below);
            let listing = if at.as_os_str().is_empty() {
                self.source.entries()
            } else {
                self.source.read_dir(&at)
            };
            let listing = match listing {
                Ok(listing) => listing,
                Err(error) => {
                    plan.failures.push(ObjectError::new(
                        ErrorKind::Denied,
                        &self.shown(&at),
                        format!("cannot list it: {error}"),
                    ));
                    continue;
                }
            };
            for item in listing.flatten() {
                let inner = below.join(item.file_name());
                if inner.to_str().is_none() {
                    plan.failures.push(ObjectError::new(
                        ErrorKind::HostileKey,
                        &self.shown(&relative.join(&inner)),
                        "refused: the name is not UTF-8".to_owned(),
                    ));
                    continue;
                }
                match item.file_type() {
                    Ok(kind) if kind.is_dir() => pending.push(inner),
                    Ok(_) => self.file(relative, &inner, to, plan),
                    Err(_) => {}
                }
            }
        }
    }

    /// One file met in a walk: kept by the globs, a regular file inside the mount, landing at a
    /// plain path under `to`.
    fn file(&self, relative: &Path, inner: &Path, to: &str, plan: &mut Plan) {
        // UTF-8: the walk refused the other names.
        let Some(text) = inner.to_str() else {
            return;
        };
        let matched = self.include.as_ref().is_none_or(|set| set.is_match(text))
            && !self.exclude.as_ref().is_some_and(|set| set.is_match(text));
        if !matched {
            return;
        }
        let from = relative.join(inner);
        let meta = match self.source.metadata(&from) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return,
            Err(error) => {
                plan.failures.push(ObjectError::new(
                    ErrorKind::HostileKey,
                    &self.shown(&from),
                    format!("refused: {error} (a symlink that leaves the mount?)"),
                ));
                return;
            }
        };
        match local_path(text).and_then(|path| under(to, &path)) {
            Ok(path) => plan.jobs.push(FileToCopy {
                from,
                path,
                size: meta.len(),
                modified: meta.modified().ok().map(|time| time.into_std()),
            }),
            Err(error) => plan.failures.push(ObjectError::new(
                ErrorKind::HostileKey,
                &self.shown(&from),
                format!("refused: the path {error}"),
            )),
        }
    }
}

fn copy_one(
    source: &Dir,
    parents: &Parents,
    space: &Space,
    job: &FileToCopy,
    events: &Events,
) -> Result<Outcome, ObjectError> {
    let key = job.from.display().to_string();
    let fail = |kind: ErrorKind, message: String| ObjectError::new(kind, &key, message);
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
    let room = space
        .reserve(job.size)
        .map_err(|failure| fail(failure.kind, failure.message))?;
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
    let (file, mut temporary) =
        open_part(dir, &temporary_path, &options, true).map_err(|failure| {
            if failure.kind == ErrorKind::NoSpace {
                space.fill(&failure.message);
            }
            fail(failure.kind, failure.message)
        })?;
    let mut reader = source
        .open(&job.from)
        .map_err(|error| fail(ErrorKind::Denied, format!("cannot open it: {error}")))?
        .into_std();
    let mut file = file.into_std();
    let written = |error: std::io::Error, what: &str| {
        let kind = io_kind(&error);
        if kind == ErrorKind::NoSpace {
            space.fill(&error.to_string());
        }
        fail(kind, format!("{what}: {error}"))
    };
    let bytes =
        std::io::copy(&mut reader, &mut file).map_err(|error| written(error, "copy failed"))?;
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
        .map_err(|error| written(error, "cannot sync it"))?;
    dir.rename(&temporary_path, dir, &name).map_err(|error| {
        fail(
            ErrorKind::HostileKey,
            format!("cannot land it at {}: {error}", job.path.display()),
        )
    })?;
    temporary.armed = false;
    room.keep();
    Ok(Outcome::Copied(bytes))
}
