//! `plx_connections._engine`: the engine as the Python package calls it. A [`Store`] is one
//! connection's S3 client and the engine's object access on it ([`plx_transfer::Objects`]);
//! [`pull`] and [`push`] are plx-init's pulls and uploads ([`plx_pull`]). Python's side
//! (`python/plx_connections`) builds fsspec's filesystem and the datasets on these.
//!
//! Every call that waits on the network or the disk lets go of the GIL. The Tokio runtime and
//! every client are made when first needed and again after each fork: a DataLoader's workers
//! are forked, and neither a runtime's threads nor a client's pooled connections survive one.
//! The runtime is stopped before the fork ([`before_fork`], which the package registers with
//! `os.register_at_fork`), so that no thread of it is parked when the process is copied.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use plx_connections::{Artifacts, Catalog, Connection, Init, Kind, PathEntry};
use plx_credentials::{Environment, S3Settings};
use plx_transfer::{
    Body, Config, Entry, ErrorKind, Event, Listed, ObjectError, Objects, Slice, Span, Stat,
};
use pyo3::{
    create_exception,
    exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError},
    prelude::*,
    types::PyBytes,
};

create_exception!(
    plx_connections._engine,
    PlxError,
    PyOSError,
    "A connection, its credentials or a transfer failed; the message says which and why. An \
     OSError, as s3fs's failures are."
);

/// The runtime, and where it was made: the process, and how many forks it had seen.
static RUNTIME: Mutex<Option<(Made, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);

/// Forks this process has prepared for ([`before_fork`]).
static FORKS: AtomicU64 = AtomicU64::new(0);

/// Where a runtime or a client was made: what is made is good only in the same process, and
/// only until the next fork.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Made {
    pid: u32,
    forks: u64,
}

impl Made {
    fn now() -> Made {
        Made {
            pid: std::process::id(),
            forks: FORKS.load(Ordering::SeqCst),
        }
    }
}

/// This process's runtime, made when first needed (again after a fork).
fn runtime() -> PyResult<Arc<tokio::runtime::Runtime>> {
    let now = Made::now();
    let mut held = RUNTIME
        .lock()
        .map_err(|_| PlxError::new_err("the engine's runtime lock was poisoned"))?;
    if let Some((made, runtime)) = held.as_ref()
        && *made == now
    {
        return Ok(runtime.clone());
    }
    if let Some((_, inherited)) = held.take() {
        // A child forked without `before_fork`: the parent's threads are not here, and
        // dropping their runtime would wait on them.
        std::mem::forget(inherited);
    }
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(
                std::thread::available_parallelism()
                    .map(usize::from)
                    .unwrap_or(2)
                    .clamp(1, 4),
            )
            .thread_name("plx-engine")
            .enable_all()
            .build()
            .map_err(|error| PlxError::new_err(format!("cannot start the engine: {error}")))?,
    );
    *held = Some((now, runtime.clone()));
    Ok(runtime)
}

/// Called before the process forks (`os.register_at_fork`): stops the runtime and waits for its
/// threads. A thread parked in parking_lot's process-wide table when the process forks stays
/// in the child's copy of it with no thread behind it, and the child's own runtime then wakes
/// garbage (seen: a forked DataLoader worker aborting on a misaligned pointer). Parent and
/// child each make a runtime and clients again when next needed.
#[pyfunction]
fn before_fork(py: Python<'_>) {
    let taken = RUNTIME.lock().ok().and_then(|mut held| held.take());
    FORKS.fetch_add(1, Ordering::SeqCst);
    if let Some((_, runtime)) = taken {
        match Arc::try_unwrap(runtime) {
            Ok(runtime) => py.detach(|| runtime.shutdown_timeout(Duration::from_secs(5))),
            // Another thread is in a call: its runtime is left to it.
            Err(shared) => std::mem::forget(shared),
        }
    }
}

/// Runs `future` on the runtime with the GIL let go.
fn wait<T: Send>(py: Python<'_>, future: impl Future<Output = T> + Send) -> PyResult<T> {
    let runtime = runtime()?;
    Ok(py.detach(|| runtime.block_on(future)))
}

/// As [`wait`], with the future run on the engine's workers rather than on the calling thread:
/// for many requests at once (reads), whose every response would otherwise wake the Python
/// thread from the worker that read it, two threads trading places under a pod's one CPU.
fn wait_on_workers<T: Send + 'static>(
    py: Python<'_>,
    future: impl Future<Output = T> + Send + 'static,
) -> PyResult<T> {
    let runtime = runtime()?;
    py.detach(|| runtime.block_on(runtime.spawn(future)))
        .map_err(|error| PlxError::new_err(format!("the engine's reads stopped: {error}")))
}

/// An object's failure as the Python exception it is: a missing object is `FileNotFoundError`,
/// a denied one `PermissionError`, anything else `PlxError`; each with plx-init's sentence.
fn object_error(error: &ObjectError) -> PyErr {
    let message = error.to_string();
    match error.kind {
        ErrorKind::NotFound => PyFileNotFoundError::new_err((2, message, error.key.clone())),
        ErrorKind::Denied => PyPermissionError::new_err((13, message, error.key.clone())),
        _ => PlxError::new_err(message),
    }
}

fn plx_error(error: impl std::fmt::Display) -> PyErr {
    PlxError::new_err(error.to_string())
}

/// The pod's catalog (`POLYAXON_CONNECTIONS_CATALOG`).
fn catalog(env: &Environment) -> PyResult<Catalog> {
    plx_pull::catalog::load(None, env).map_err(plx_error)
}

/// The connection `name` of the pod's catalog, or its artifacts store without a name; None
/// when there is no name and no store. As JSON: Python's side needs its kind and paths.
#[pyfunction]
#[pyo3(signature = (name=None))]
fn connection(name: Option<&str>) -> PyResult<Option<String>> {
    let env = Environment::from_process();
    let catalog = catalog(&env)?;
    let found = match name {
        Some(name) => Some(catalog.find(name).map_err(plx_error)?),
        None => catalog.artifacts_store.as_ref(),
    };
    found
        .map(|connection| serde_json::to_string(connection).map_err(plx_error))
        .transpose()
}

/// A stat as Python reads it: key, size, ETag, seconds since the epoch, version.
type StatTuple = (String, u64, Option<String>, Option<i64>, Option<String>);

/// A slice as Python asks for it: key, start (negative: the last bytes), end (exclusive),
/// version, ETag.
type SliceTuple = (
    String,
    Option<i64>,
    Option<u64>,
    Option<String>,
    Option<String>,
);

/// A pinned object as Python reads it: key, size, version, ETag.
type PinnedTuple = (String, u64, Option<String>, Option<String>);

fn stat_tuple(stat: Stat) -> StatTuple {
    (stat.key, stat.size, stat.etag, stat.modified, stat.version)
}

/// Each read's bytes, or the exception it failed with.
fn bodies(py: Python<'_>, read: Vec<Result<Body, ObjectError>>) -> Vec<Py<PyAny>> {
    read.into_iter()
        .map(|result| match result {
            // One copy, from the connection's buffers into the `bytes` Python holds: a buffer
            // Python reads in place needs the buffer protocol, which the limited API of the
            // abi3 wheel has only from 3.11.
            Ok(body) => match PyBytes::new_with(py, body.len(), |out| {
                body.copy_to(out);
                Ok(())
            }) {
                Ok(bytes) => bytes.into_any().unbind(),
                Err(error) => error.into_value(py).into_any(),
            },
            Err(error) => object_error(&error).into_value(py).into_any(),
        })
        .collect()
}

/// One s3 connection's store: its settings resolved once (files, env, `POLYAXON_` prefixes),
/// its client and the engine's object access made per process and fork. Pickled as the
/// catalog's name for it (or the connection a caller gave), never its credentials, and resolved
/// again where it is unpickled.
#[pyclass(frozen, module = "plx_connections._engine")]
struct Store {
    /// The connection as JSON, given by the caller; None for the catalog's, which a pickle
    /// names instead (a catalog's `env` may hold values a pickle must not carry).
    connection: Option<String>,
    settings: S3Settings,
    live: Mutex<Option<(Made, Arc<Live>)>>,
}

/// What a store's calls go through in this process, since the last fork.
struct Live {
    /// The connection's client as plx-init's transfers use it (downloads and uploads).
    client: aws_sdk_s3::Client,
    /// The engine's object access, on its own copy of the client.
    objects: Objects,
}

impl Store {
    fn resolve(connection: &Connection, given: Option<&str>) -> PyResult<Store> {
        if connection.kind != Kind::S3 {
            return Err(PlxError::new_err(format!(
                "connection `{}` is of kind {}; a Store reads s3 connections (mounts are read as local files)",
                connection.name, connection.kind
            )));
        }
        let env = Environment::from_process();
        let settings = S3Settings::resolve(connection, &env).map_err(plx_error)?;
        Ok(Store {
            connection: given.map(str::to_owned),
            settings,
            live: Mutex::new(None),
        })
    }

    /// This process's client and object access, made again after a fork (the client's
    /// connections belonged to the runtime the fork stopped).
    fn live(&self, py: Python<'_>) -> PyResult<Arc<Live>> {
        let now = Made::now();
        if let Ok(held) = self.live.lock()
            && let Some((made, live)) = held.as_ref()
            && *made == now
        {
            return Ok(live.clone());
        }
        let client = wait(py, plx_credentials::client(&self.settings))?.map_err(plx_error)?;
        let objects = Objects::new(&client, Config::default());
        let live = Arc::new(Live { client, objects });
        if let Ok(mut held) = self.live.lock() {
            if let Some((made, inherited)) = held.take()
                && made.pid != now.pid
            {
                // The parent's: dropping it could touch what only the parent has.
                std::mem::forget(inherited);
            }
            *held = Some((now, live.clone()));
        }
        Ok(live)
    }
}

#[pymethods]
impl Store {
    /// The store of the connection `name` in the pod's catalog.
    #[staticmethod]
    fn from_name(name: &str) -> PyResult<Store> {
        let env = Environment::from_process();
        let catalog = catalog(&env)?;
        Store::resolve(catalog.find(name).map_err(plx_error)?, None)
    }

    /// The store of a connection given as JSON (Polyaxon's `V1Connection.to_dict()`).
    #[staticmethod]
    fn from_json(given: &str) -> PyResult<Store> {
        let catalog =
            plx_connections::pod_catalog(Some(&format!("{{\"connections\": [{given}]}}")))
                .map_err(plx_error)?;
        let connection = catalog
            .connections
            .first()
            .ok_or_else(|| PlxError::new_err("the connection given is empty"))?;
        Store::resolve(connection, Some(given))
    }

    /// The connection's name.
    #[getter]
    fn name(&self) -> &str {
        &self.settings.connection
    }

    /// The connection's bucket.
    #[getter]
    fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// The connection's prefix in its bucket (no slashes at either end).
    #[getter]
    fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    /// The endpoint, where the connection names one.
    #[getter]
    fn endpoint(&self) -> Option<&str> {
        self.settings
            .endpoint_url
            .as_ref()
            .map(|endpoint| endpoint.value.as_str())
    }

    /// The connection as JSON, for a pickle.
    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<(Py<PyAny>, (String,))> {
        let store = slf.get();
        let (made_by, argument) = match &store.connection {
            Some(given) => ("from_json", given.clone()),
            None => ("from_name", store.settings.connection.clone()),
        };
        let made_by = slf.py().get_type::<Store>().getattr(made_by)?.unbind();
        Ok((made_by, (argument,)))
    }

    fn __repr__(&self) -> String {
        format!(
            "Store(connection={:?}, bucket={:?}, prefix={:?})",
            self.settings.connection, self.settings.bucket, self.settings.prefix
        )
    }

    /// Every object under `prefix` (with `children`, one level down and the prefixes below;
    /// with `limit`, one page of at most that many): (objects as stat tuples, prefixes).
    #[pyo3(signature = (bucket, prefix, children, limit=None))]
    fn list(
        &self,
        py: Python<'_>,
        bucket: &str,
        prefix: &str,
        children: bool,
        limit: Option<i32>,
    ) -> PyResult<(Vec<StatTuple>, Vec<String>)> {
        let live = self.live(py)?;
        let listing = wait(py, live.objects.list(bucket, prefix, children, limit))?
            .map_err(|error| object_error(&error))?;
        Ok((
            listing.objects.into_iter().map(stat_tuple).collect(),
            listing.prefixes,
        ))
    }

    /// What the store says of `key` (with `once`, one try only).
    #[pyo3(signature = (bucket, key, version=None, once=false))]
    fn head(
        &self,
        py: Python<'_>,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        once: bool,
    ) -> PyResult<StatTuple> {
        let live = self.live(py)?;
        wait(py, live.objects.head(bucket, key, version, once))?
            .map(stat_tuple)
            .map_err(|error| object_error(&error))
    }

    /// Reads every slice at once: each `(key, start, end, version, etag)` (start negative: the
    /// last bytes; end None: to the end; end exclusive). Returns, in order, each slice's bytes
    /// or the exception it failed with.
    fn read(
        &self,
        py: Python<'_>,
        bucket: &str,
        slices: Vec<SliceTuple>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let live = self.live(py)?;
        let slices: Vec<Slice> = slices
            .into_iter()
            .map(|(key, start, end, version, etag)| {
                let span = match (start.unwrap_or(0), end) {
                    (start, None) if start < 0 => Span::Last(start.unsigned_abs()),
                    (0, None) => Span::Whole,
                    (start, None) => Span::From(start as u64),
                    (start, Some(end)) => Span::Between(start.max(0) as u64, end),
                };
                Slice {
                    key,
                    span,
                    version,
                    etag,
                }
            })
            .collect();
        let bucket = bucket.to_owned();
        let read = wait_on_workers(py, async move { live.objects.read(&bucket, &slices).await })?;
        Ok(bodies(py, read))
    }

    /// Reads every listed object `(key, size, ETag)` whole, at once, through the node cache
    /// `cache` (else the one `PLX_CACHE_DIR` names, as plx-init's) where it holds the object
    /// and it checks out as a pull's would; returns, in order, each object's bytes or the
    /// exception it failed with.
    #[pyo3(signature = (bucket, objects, cache=None))]
    fn read_listed(
        &self,
        py: Python<'_>,
        bucket: &str,
        objects: Vec<(String, u64, Option<String>)>,
        cache: Option<PathBuf>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let live = self.live(py)?;
        let cache = plx_pull::Cache::from_env(cache.as_deref(), None)
            .map_err(plx_error)?
            .map(|cache| cache.for_store(&self.settings));
        let objects: Vec<Listed> = objects
            .into_iter()
            .map(|(key, size, etag)| Listed { key, size, etag })
            .collect();
        let bucket = bucket.to_owned();
        let read = wait_on_workers(py, async move {
            live.objects
                .read_listed(&bucket, &objects, cache.as_ref())
                .await
        })?;
        Ok(bodies(py, read))
    }

    /// Writes `data` as the object `key`.
    fn put(&self, py: Python<'_>, bucket: &str, key: &str, data: Vec<u8>) -> PyResult<StatTuple> {
        let live = self.live(py)?;
        wait(py, live.objects.put(bucket, key, data.into()))?
            .map(stat_tuple)
            .map_err(|error| object_error(&error))
    }

    /// Removes the object `key`.
    fn remove(&self, py: Python<'_>, bucket: &str, key: &str) -> PyResult<()> {
        let live = self.live(py)?;
        wait(py, live.objects.remove(bucket, key))?.map_err(|error| object_error(&error))
    }

    /// Copies the object `from_` to `to` in `bucket`.
    fn copy(&self, py: Python<'_>, bucket: &str, from_: &str, to: &str) -> PyResult<()> {
        let live = self.live(py)?;
        wait(py, live.objects.copy(bucket, from_, to))?.map_err(|error| object_error(&error))
    }

    /// Downloads `files` (pairs of a key and a path under `root`) and `dirs` (pairs of a
    /// prefix and a directory under `root`) into `root`, as plx-init does: atomically,
    /// verified, resumable (the state in `state`, else beside `root`), through the node cache
    /// `PLX_CACHE_DIR` names as plx-init's does. Returns the summary record as JSON; raises the
    /// first failure (naming every one) when any object failed.
    #[pyo3(signature = (bucket, root, files, dirs, state=None, progress=None))]
    #[expect(clippy::too_many_arguments, reason = "Python's keyword arguments")]
    fn download(
        &self,
        py: Python<'_>,
        bucket: &str,
        root: PathBuf,
        files: Vec<(String, String)>,
        dirs: Vec<(String, String)>,
        state: Option<PathBuf>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let live = self.live(py)?;
        let cache = plx_pull::Cache::from_env(None, None)
            .map_err(plx_error)?
            .map(|cache| cache.for_store(&self.settings));
        let request = plx_transfer::Download {
            bucket: bucket.to_owned(),
            cache,
            entries: files
                .into_iter()
                .map(|(from, to)| Entry::File { from, to })
                .chain(dirs.into_iter().map(|(from, to)| Entry::Dir { from, to }))
                .collect(),
            state,
            ..plx_transfer::Download::default()
        };
        std::fs::create_dir_all(&root).map_err(|error| {
            PlxError::new_err(format!("cannot create {}: {error}", root.display()))
        })?;
        let client = live.client.clone();
        let result = with_progress(py, progress, move |events| async move {
            plx_transfer::download(&client, &request, &root, &Config::default(), &events).await
        })?;
        recorded(&self.settings.connection, result)
    }

    /// Uploads `files`, each local file to its key in `bucket`, in one upload as plx-init's:
    /// multipart above the threshold, nothing visible before it is complete.
    fn upload(
        &self,
        py: Python<'_>,
        bucket: &str,
        files: Vec<(PathBuf, String)>,
    ) -> PyResult<String> {
        let live = self.live(py)?;
        let request = plx_transfer::Upload {
            files,
            ..plx_transfer::Upload::new(bucket, "", "")
        };
        let client = live.client.clone();
        let result = wait(py, async move {
            plx_transfer::upload(&client, &request, &Config::default(), &None).await
        })?;
        recorded(&self.settings.connection, result)
    }
}

/// The record of a transfer as JSON, or its failures raised (the first one's type).
fn recorded(
    connection: &str,
    result: Result<plx_transfer::Summary, plx_transfer::Error>,
) -> PyResult<String> {
    match &result {
        Err(error) if !error.failures.is_empty() => {
            let first = object_error(&error.failures[0]);
            if error.failures.len() == 1 {
                return Err(first);
            }
            Err(match error.failures[0].kind {
                ErrorKind::NotFound | ErrorKind::Denied => first,
                _ => PlxError::new_err(error.to_string()),
            })
        }
        _ => serde_json::to_string(&plx_transfer::Record::new(connection, &result))
            .map_err(plx_error),
    }
}

/// Runs a transfer with the GIL let go, calling `progress(bytes, objects)` (their totals so
/// far) about ten times a second while it goes.
fn with_progress<T, F, Fut>(py: Python<'_>, progress: Option<Py<PyAny>>, transfer: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(plx_transfer::Events) -> Fut + Send,
    Fut: Future<Output = T> + Send + 'static,
{
    let runtime = runtime()?;
    let Some(progress) = progress else {
        return Ok(py.detach(|| runtime.block_on(transfer(None))));
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut task = runtime.spawn(transfer(Some(sender)));
    let (mut bytes, mut done) = (0u64, 0u64);
    loop {
        let finished = py.detach(|| {
            runtime.block_on(async {
                tokio::select! {
                    joined = &mut task => Some(joined),
                    () = tokio::time::sleep(std::time::Duration::from_millis(100)) => None,
                }
            })
        });
        while let Ok(event) = receiver.try_recv() {
            match event {
                Event::Bytes(count) => bytes += count,
                Event::Done { .. } | Event::Skipped { .. } => done += 1,
                _ => {}
            }
        }
        progress.call1(py, (bytes, done))?;
        if let Some(joined) = finished {
            return joined
                .map_err(|error| PlxError::new_err(format!("the transfer stopped: {error}")));
        }
    }
}

/// A path entry as plx-init takes one: `from:to`, or a path kept as it is.
fn path_entry(text: String) -> PathEntry {
    plx_pull::path_entry(&text)
}

/// Pulls as plx-init does: from `connection` (the artifacts store without one) the `dirs`,
/// `files` and `paths` (each `from` or `from:to`) into `to` (Polyaxon's default under the
/// context root without it); with a manifest written, a pin followed, and a node cache, as
/// plx-init's flags or `PLX_*` say. Returns the pull's record as JSON (failures in it, not
/// raised: the caller decides, as plx-init's exit code does).
#[pyfunction]
#[pyo3(signature = (connection=None, dirs=Vec::new(), files=Vec::new(), paths=Vec::new(), to=None, workers=None, verify=true, manifest=None, pin=None, cache=None, cache_size=None, progress=None))]
#[allow(
    clippy::too_many_arguments,
    reason = "Python's keyword arguments, plx-init's flags"
)]
fn pull(
    py: Python<'_>,
    connection: Option<String>,
    dirs: Vec<String>,
    files: Vec<String>,
    paths: Vec<String>,
    to: Option<String>,
    workers: Option<usize>,
    verify: bool,
    manifest: Option<PathBuf>,
    pin: Option<PathBuf>,
    cache: Option<PathBuf>,
    cache_size: Option<u64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let env = Environment::from_process();
    let catalog = catalog(&env)?;
    let listed = |items: Vec<String>| {
        (!items.is_empty()).then(|| items.into_iter().map(path_entry).collect::<Vec<_>>())
    };
    let init = Init {
        artifacts: (!dirs.is_empty() || !files.is_empty()).then(|| Artifacts {
            files: listed(files),
            dirs: listed(dirs),
            workers: workers.map(|workers| workers as u32),
        }),
        paths: listed(paths),
        connection,
        path: to,
        ..Init::default()
    };
    let options = plx_pull::Options {
        workers,
        verify,
        ..plx_pull::Options::from_env(
            manifest.as_deref(),
            pin.as_deref(),
            cache.as_deref(),
            cache_size,
        )
        .map_err(plx_error)?
    };
    let pulled = with_progress(py, progress, move |events| async move {
        let puller = plx_pull::Puller::new(&catalog, &env);
        let pulled = puller.init(&init, &options, &events).await?;
        if let (Some(file), Some(lineage)) = (&options.manifest, pulled.lineage()) {
            plx_pull::manifest::write(file, vec![lineage])?;
        }
        Ok::<_, plx_pull::Error>(pulled.record())
    })?
    .map_err(plx_error)?;
    serde_json::to_string(&pulled).map_err(plx_error)
}

/// Uploads `source` (a file or a directory) to `to` under `connection`'s bucket and prefix, as
/// `plx-init upload` does. Returns the record as JSON.
#[pyfunction]
#[pyo3(signature = (source, connection=None, to=String::new(), workers=None, progress=None))]
fn push(
    py: Python<'_>,
    source: PathBuf,
    connection: Option<String>,
    to: String,
    workers: Option<usize>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let env = Environment::from_process();
    let catalog = catalog(&env)?;
    let connection = plx_pull::catalog::connection(
        &catalog,
        connection.as_deref(),
        "no connection named and the catalog has no artifacts store",
    )
    .map_err(plx_error)?
    .clone();
    let sent = with_progress(py, progress, move |events| async move {
        plx_pull::upload(&connection, &env, &source, &to, workers, &events).await
    })?
    .map_err(plx_error)?;
    serde_json::to_string(&sent.record()).map_err(plx_error)
}

/// What `manifest` pinned of `connection`: its bucket and each object's key, size, version and
/// ETag (reads take the version where there is one, else only that ETag).
#[pyfunction]
fn pinned(manifest: PathBuf, connection: &str) -> PyResult<(String, Vec<PinnedTuple>)> {
    let read = plx_pull::manifest::Manifest::read(&manifest).map_err(plx_error)?;
    let mut bucket = None;
    let mut objects = Vec::new();
    for pull in read
        .pulls
        .into_iter()
        .filter(|pull| pull.connection == connection)
    {
        bucket = Some(pull.bucket);
        objects.extend(pull.objects.into_iter().map(|object| {
            let etag = (!object.etag.is_empty()).then_some(object.etag);
            (object.key, object.size, object.version_id, etag)
        }));
    }
    match bucket {
        Some(bucket) if !objects.is_empty() => Ok((bucket, objects)),
        _ => Err(PlxError::new_err(format!(
            "the manifest {} pins nothing of connection `{connection}`",
            manifest.display()
        ))),
    }
}

#[pymodule]
fn _engine(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("PlxError", module.py().get_type::<PlxError>())?;
    module.add_class::<Store>()?;
    module.add_function(wrap_pyfunction!(connection, module)?)?;
    module.add_function(wrap_pyfunction!(pull, module)?)?;
    module.add_function(wrap_pyfunction!(push, module)?)?;
    module.add_function(wrap_pyfunction!(pinned, module)?)?;
    module.add_function(wrap_pyfunction!(before_fork, module)?)?;
    Ok(())
}
