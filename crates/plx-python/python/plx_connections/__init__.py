"""Polyaxon's data connections from a job's own Python, on plx-connections' engine.

``polyaxon.fs``'s functions under the same names and with the same arguments, so that changing
``from polyaxon.fs import get_fs_from_name`` to ``from plx_connections import get_fs_from_name``
is the whole migration; and plx-init's pulls and uploads as ``download`` and ``upload``. The
catalog is the pod's ``POLYAXON_CONNECTIONS_CATALOG``; credentials are found as Polyaxon finds
them (the mounted secret's files, then the environment, then ``POLYAXON_``-prefixed), plus
``AWS_SESSION_TOKEN``, AssumeRole and IRSA. No secret is kept in any object's ``repr`` or
pickle.
"""

import json
import os

from . import _engine
from ._engine import PlxError
from .fs import S3FileSystem

__all__ = [
    "PlxError",
    "S3FileSystem",
    "close_fs",
    "download",
    "get_artifacts_connection",
    "get_artifacts_connection_type",
    "get_artifacts_store_name",
    "get_async_fs_from_connection",
    "get_default_fs",
    "get_fs_from_name",
    "get_store_path",
    "get_sync_default_fs",
    "get_sync_fs_from_connection",
    "upload",
]

# The engine's runtime stops before a fork and is made again after it, in parent and child
# (a DataLoader forks its workers).
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_engine.before_fork)

#: Kinds read as local files: the connection is mounted into the pod.
MOUNTED = {"host_path", "volume_claim"}


def _as_dict(connection):
    """A connection as a dict: Polyaxon's ``V1Connection``, a dict, or its JSON."""
    if connection is None or isinstance(connection, dict):
        return connection
    if isinstance(connection, str):
        return json.loads(connection)
    if hasattr(connection, "to_dict"):
        return connection.to_dict()
    raise TypeError(f"not a connection: {type(connection).__name__}")


def _connection(name):
    text = _engine.connection(name)
    return json.loads(text) if text is not None else None


def _get_fs_from_connection(
    connection, asynchronous=False, use_listings_cache=False, catalogued=False, **kwargs
):
    connection = _as_dict(connection)
    if not connection or connection.get("kind") in MOUNTED:
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(
            auto_mkdir=kwargs.get("auto_mkdir", True),
            use_listings_cache=use_listings_cache,
        )
    if connection.get("kind") == "s3":
        # The catalog's connection by its name: the filesystem's pickle (its arguments) then
        # carries no value of the catalog's `env`.
        named = {"name": connection["name"]} if catalogued else {"connection": connection}
        return S3FileSystem(
            **named,
            asynchronous=asynchronous,
            use_listings_cache=use_listings_cache,
            **kwargs,
        )
    raise PlxError(
        f"connection `{connection.get('name')}` is of kind {connection.get('kind')}; "
        "plx_connections reads s3, host_path and volume_claim connections "
        "(use polyaxon.fs for gcs and wasb)"
    )


def get_fs_from_name(connection_name, asynchronous=False, **kwargs):
    """The filesystem of the catalog's connection ``connection_name``: an ``S3FileSystem`` for
    s3, fsspec's ``LocalFileSystem`` for a mount. An unknown name raises ``PlxError`` naming the
    known ones (Polyaxon would hand back a local filesystem)."""
    return _get_fs_from_connection(
        _connection(connection_name), asynchronous=asynchronous, catalogued=True, **kwargs
    )


def get_sync_fs_from_connection(connection, **kwargs):
    """The filesystem of ``connection`` (a ``V1Connection``, a dict, or None for local)."""
    return _get_fs_from_connection(connection, **kwargs)


async def get_async_fs_from_connection(connection, **kwargs):
    """The asynchronous filesystem of ``connection``."""
    return _get_fs_from_connection(connection, asynchronous=True, **kwargs)


def get_artifacts_connection():
    """The artifacts store's connection (``POLYAXON_ARTIFACTS_STORE_NAME``, else the catalog's
    store), as a dict; None without one."""
    name = os.environ.get("POLYAXON_ARTIFACTS_STORE_NAME")
    try:
        return _connection(name or None)
    except PlxError:
        if name:
            raise
        return None


def get_artifacts_store_name(default="artifacts_store"):
    """The artifacts store's name, as ``POLYAXON_ARTIFACTS_STORE_NAME`` gives it."""
    return os.environ.get("POLYAXON_ARTIFACTS_STORE_NAME", default)


#: Polyaxon's older name.
get_artifacts_connection_type = get_artifacts_connection


def get_sync_default_fs(**kwargs):
    """The artifacts store's filesystem."""
    return get_sync_fs_from_connection(get_artifacts_connection(), **kwargs)


async def get_default_fs(**kwargs):
    """The artifacts store's asynchronous filesystem."""
    return await get_async_fs_from_connection(get_artifacts_connection(), **kwargs)


async def close_fs(fs):
    """Closes what a filesystem holds open. Ours holds nothing that needs it (the engine's
    connections are pooled per process); another fs is closed as Polyaxon closes it."""
    if isinstance(fs, S3FileSystem):
        return
    for close in (
        lambda: fs.session.close(),
        lambda: fs.close_session(fs.loop, fs.session),
        lambda: fs.close(),
    ):
        try:
            result = close()
            if hasattr(result, "__await__"):
                await result
        except Exception:  # noqa: BLE001 - Polyaxon's close_fs swallows these too
            pass


def get_store_path(store_path, subpath, entity=None):
    """``subpath`` under ``store_path``, as Polyaxon's ``get_store_path`` joins them (the
    viewer service mode puts an entity's kind in between)."""
    full_path = store_path
    if os.environ.get("POLYAXON_SERVICE_MODE") == "viewer":
        full_path = os.path.join(full_path, "runs" if entity == "runtime" else f"{entity}s")
    if subpath:
        full_path = os.path.join(full_path, subpath)
    return full_path


def _checked(record, check):
    """A transfer's record; with ``check``, a transfer that failed raises, naming every failure."""
    if check and not record["ok"]:
        raise PlxError(
            f"{record['connection']}: {len(record['failures'])} failed: "
            + "; ".join(record["failures"])
        )
    return record


def download(
    connection=None,
    dirs=(),
    files=(),
    paths=(),
    to=None,
    workers=None,
    verify=True,
    manifest=None,
    pin=None,
    cache=None,
    cache_size=None,
    progress=None,
    check=True,
):
    """Pulls as ``plx-init artifacts`` does: ``dirs``, ``files`` and ``paths`` (each ``"from"``
    or ``"from:to"``) of ``connection`` (the artifacts store without one) into ``to``
    (Polyaxon's default under the context root without it), atomically and verified; with a
    ``manifest`` written, a ``pin`` followed and a node ``cache``, as plx-init's flags (or its
    ``PLX_*`` variables) say. ``progress(bytes, objects)`` is called as it goes. Returns the
    pull's record (the dict ``plx-init --summary`` writes); raises ``PlxError`` naming every
    failure when anything asked for did not land, unless ``check`` is false."""
    record = json.loads(
        _engine.pull(
            connection=connection,
            dirs=list(dirs),
            files=list(files),
            paths=list(paths),
            to=to,
            workers=workers,
            verify=verify,
            manifest=manifest,
            pin=pin,
            cache=cache,
            cache_size=cache_size,
            progress=progress,
        )
    )
    return _checked(record, check)


def upload(source, connection=None, to="", workers=None, progress=None, check=True):
    """Sends ``source`` (a file or a directory) to ``to`` under ``connection``'s bucket and
    prefix, as ``plx-init upload`` does. Returns its record; raises ``PlxError`` when a file
    did not go, unless ``check`` is false."""
    record = json.loads(
        _engine.push(
            os.fspath(source), connection=connection, to=to, workers=workers, progress=progress
        )
    )
    return _checked(record, check)
