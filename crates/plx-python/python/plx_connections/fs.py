"""fsspec's filesystem for an s3 connection, on the engine.

``S3FileSystem`` answers as s3fs does (paths ``bucket/key``, with or without ``s3://``; info keys
``name``, ``size``, ``type``, ``ETag``, ``LastModified``, ``VersionId``), so code written for
Polyaxon's ``get_fs_from_name`` runs unchanged. Its primitives are the engine's:

- listings are ListObjectsV2 pages put together in Rust; ``find`` is one flat listing;
- ``cat`` of many paths, ``cat_ranges`` and ``cat_file`` read every object at once under the
  engine's in-flight controller, raced when late, retried, and checked: a body shorter than the
  store said, or whose MD5 or CRC is not the store's, raises and is never returned;
- ``get`` lands files as plx-init does (hidden temporaries renamed when verified, resumable, no
  key written outside the local path, through the node cache ``PLX_CACHE_DIR`` names);
- ``put`` (one upload for all its files) and writes through ``open`` go through the upload
  engine (multipart above 16 MiB; nothing is visible until the file is closed).

s3fs's keyword arguments are accepted. Honoured: ``asynchronous``, ``loop``,
``use_listings_cache``, ``listings_expiry_time``, ``max_paths``, ``skip_instance_cache``,
``default_block_size``, ``default_cache_type``, ``default_fill_cache``, ``version_aware``,
``auto_mkdir`` (no directories to make on S3). Accepted and ignored, because the connection
decides them (its secret, its env, ``AWS_*``) or the engine does (its retries, timeouts and
in-flight controller): ``key``, ``secret``, ``token``, ``username``, ``password``,
``endpoint_url``, ``use_ssl``, ``config_kwargs``, ``client_kwargs``, ``s3_additional_kwargs``,
``requester_pays``, ``cache_regions``, ``session``, ``max_concurrency``, ``fixed_upload_size``,
``anon``. Any other keyword is a ``TypeError``.
"""

import asyncio
import datetime
import hashlib
import json
import os
import shutil
import tempfile

from fsspec.asyn import AsyncFileSystem, sync_wrapper
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.implementations.local import LocalFileSystem, make_path_posix
from fsspec.spec import AbstractBufferedFile
from fsspec.utils import other_paths

from . import _engine

__all__ = ["S3FileSystem"]

#: s3fs's keywords this filesystem honours.
HONOURED = {
    "asynchronous",
    "loop",
    "use_listings_cache",
    "listings_expiry_time",
    "max_paths",
    "skip_instance_cache",
    "default_block_size",
    "default_cache_type",
    "default_fill_cache",
    "version_aware",
    "auto_mkdir",
    "batch_size",
}
#: s3fs's keywords the connection or the engine decides instead.
IGNORED = {
    "key",
    "secret",
    "token",
    "username",
    "password",
    "endpoint_url",
    "use_ssl",
    "config_kwargs",
    "client_kwargs",
    "s3_additional_kwargs",
    "requester_pays",
    "cache_regions",
    "session",
    "max_concurrency",
    "fixed_upload_size",
    "anon",
}


def _has_magic(path):
    return any(char in path for char in "*?[")


def _trailing_sep(path):
    return path.endswith(os.sep) or (os.altsep is not None and path.endswith(os.altsep))


def _in_thread(call, *args):
    """Runs a blocking engine call (it lets go of the GIL) off the event loop."""
    return asyncio.get_running_loop().run_in_executor(None, call, *args)


def _state_dir(root):
    """Where a ``get`` into ``root`` keeps the engine's state (what lets a rerun skip what
    landed): the user's cache, since ``root`` holds only the data and its parent is theirs."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:24]
    return os.path.join(cache, "plx-connections", "state", digest)


def _modified(seconds):
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def _file_info(bucket, stat, listed=False):
    key, size, etag, modified, version = stat
    name = f"{bucket}/{key}"
    info = {
        "ETag": f'"{etag}"' if etag is not None else "",
        "LastModified": _modified(modified),
        "size": size,
        "name": name,
        "type": "file",
        "StorageClass": "STANDARD",
        "VersionId": version,
    }
    if listed:
        info.update({"Key": name, "Size": size})
        del info["VersionId"]
    return info


def _dir_info(name, listed=False):
    info = {"name": name, "size": 0, "type": "directory", "StorageClass": "DIRECTORY"}
    if listed:
        info.update({"Key": name, "Size": 0})
    return info


class S3FileSystem(AsyncFileSystem):
    """One s3 connection's objects, as fsspec's filesystem; see the module's text."""

    protocol = ("s3", "s3a")
    root_marker = ""
    # Polyaxon's: the engine tries each request up to its own attempts, with backoff.
    retries = 3
    default_block_size = 5 * 2**20
    mirror_sync_methods = True

    def __init__(
        self,
        name=None,
        connection=None,
        asynchronous=False,
        loop=None,
        default_block_size=None,
        default_fill_cache=True,
        default_cache_type="readahead",
        version_aware=False,
        use_listings_cache=False,
        listings_expiry_time=None,
        max_paths=None,
        **kwargs,
    ):
        unknown = set(kwargs) - HONOURED - IGNORED
        if unknown:
            raise TypeError(
                "S3FileSystem() got keywords s3fs does not take: "
                + ", ".join(sorted(unknown))
            )
        kwargs.pop("auto_mkdir", None)
        for ignored in IGNORED & set(kwargs):
            kwargs.pop(ignored)
        super().__init__(
            asynchronous=asynchronous,
            loop=loop,
            use_listings_cache=use_listings_cache,
            listings_expiry_time=listings_expiry_time,
            max_paths=max_paths,
            **kwargs,
        )
        if connection is not None:
            if not isinstance(connection, str):
                connection = json.dumps(connection)
            self.store = _engine.Store.from_json(connection)
        elif name is not None:
            self.store = _engine.Store.from_name(name)
        else:
            raise TypeError("S3FileSystem() needs a connection's name or the connection")
        self.connection_name = self.store.name
        self.default_block_size = default_block_size or self.default_block_size
        self.default_fill_cache = default_fill_cache
        self.default_cache_type = default_cache_type
        self.version_aware = version_aware
        # Directories the last listings showed (``get`` leaves them out of its files).
        self._seen_dirs = set()

    def __repr__(self):
        return f"plx_connections.S3FileSystem(connection={self.connection_name!r})"

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        for protocol in cls.protocol:
            if path.startswith(protocol + "://"):
                path = path[len(protocol) + 3 :]
                break
        return path.strip("/")

    def split_path(self, path):
        """``bucket/key`` as ``(bucket, key, version)``."""
        path = self._strip_protocol(path)
        version = None
        if "?versionId=" in path:
            path, version = path.split("?versionId=", 1)
        bucket, _, key = path.partition("/")
        return bucket, key, version

    @property
    def loop(self):
        # A forked child (a DataLoader's worker) gets fsspec's loop made again, as the engine
        # makes its own runtime and client there; s3fs refuses ("not fork-safe"). An
        # asynchronous instance runs on its caller's loop, which the child does not have.
        if self._pid != os.getpid() and not self.asynchronous:
            from fsspec.asyn import get_loop

            self._loop, self._pid = get_loop(), os.getpid()
        return super().loop

    def unstrip_protocol(self, name):
        return "s3://" + name

    # Listing.

    async def _list(self, bucket, prefix, children, limit=None):
        return await _in_thread(self.store.list, bucket, prefix, children, limit)

    async def _lsdir(self, path, refresh=False):
        path = self._strip_protocol(path)
        if not refresh and path in self.dircache:
            return self.dircache[path]
        bucket, key, _ = self.split_path(path)
        prefix = f"{key}/" if key else ""
        objects, prefixes = await self._list(bucket, prefix, True)
        entries = [
            _file_info(bucket, stat, listed=True)
            for stat in objects
            # A directory marker (`key/`) is the directory itself.
            if stat[0] != prefix
        ]
        entries += [_dir_info(f"{bucket}/{p.rstrip('/')}", listed=True) for p in prefixes]
        entries.sort(key=lambda entry: entry["name"])
        if entries:
            # Kept only with use_listings_cache (fsspec's DirCache keeps nothing otherwise).
            self.dircache[path] = entries
        return entries

    async def _ls(self, path, detail=True, refresh=False, **kwargs):
        path = self._strip_protocol(path)
        if not path:
            # The connection's bucket: its credentials may not list the account's buckets.
            entries = [_dir_info(self.store.bucket)]
        else:
            entries = await self._lsdir(path, refresh=refresh)
            if not entries:
                # A file lists as itself; nothing at all is missing.
                entries = [await self._info(path)]
        return entries if detail else [entry["name"] for entry in entries]

    async def _info(self, path, **kwargs):
        path = self._strip_protocol(path)
        bucket, key, version = self.split_path(path)
        if not key:
            if not bucket:
                return _dir_info("")
            return _dir_info(bucket)
        # The object, else the directory: asked at once, the file winning where a key is both.
        # A store that fails a HEAD on a prefix (s3s-fs answers 500) still has its directories;
        # a HEAD that failed otherwise, with nothing under the key, is tried again in full.
        head, listing = await asyncio.gather(
            _in_thread(self.store.head, bucket, key, version, True),
            self._list(bucket, f"{key}/", True, 1),
            return_exceptions=True,
        )
        if not isinstance(head, BaseException):
            return _file_info(bucket, head)
        if not isinstance(listing, BaseException) and (listing[0] or listing[1]):
            return _dir_info(path)
        if isinstance(head, FileNotFoundError):
            raise FileNotFoundError(2, f"{path}: no such object or directory", path)
        return _file_info(bucket, await _in_thread(self.store.head, bucket, key, version))

    async def _find(self, path, maxdepth=None, withdirs=False, detail=False, prefix="", **kwargs):
        if maxdepth is not None or prefix:
            return await super()._find(
                path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs
            )
        path = self._strip_protocol(path)
        bucket, key, _ = self.split_path(path)
        found = {}
        objects, _ = await self._list(bucket, f"{key}/" if key else "", False)
        for stat in objects:
            if stat[0].endswith("/"):
                # A directory marker: its directory, not a file.
                if withdirs:
                    name = f"{bucket}/{stat[0].rstrip('/')}"
                    found[name] = _dir_info(name)
                    self._seen_dirs.add(name)
                continue
            info = _file_info(bucket, stat, listed=True)
            found[info["name"]] = info
        if withdirs:
            top = path
            for name in list(found):
                parent = name.rsplit("/", 1)[0]
                while len(parent) > len(top) and parent.startswith(top + "/") and parent not in found:
                    found[parent] = _dir_info(parent)
                    self._seen_dirs.add(parent)
                    parent = parent.rsplit("/", 1)[0]
            if found and key:
                found[path] = _dir_info(path)
                self._seen_dirs.add(path)
        if not found and key:
            try:
                info = await self._info(path)
            except FileNotFoundError:
                info = None
            if info is not None and info["type"] == "file":
                found[path] = info
        names = sorted(found)
        if detail:
            return {name: found[name] for name in names}
        return names

    # Reading.

    async def _span(self, path, start, end):
        """fsspec's start and end as the engine takes them: end exclusive, never negative."""
        if (start is not None and start < 0 and end is not None) or (end is not None and end < 0):
            info = await self._info(path)
            if info["type"] != "file":
                raise FileNotFoundError(2, f"{path}: no such object", path)
            size = info["size"]
            start = max(size + start, 0) if start is not None and start < 0 else start
            end = max(size + end, 0) if end is not None and end < 0 else end
        return start, end

    async def _read(self, slices, bucket):
        return await _in_thread(self.store.read, bucket, slices)

    async def _cat_file(self, path, start=None, end=None, version_id=None, **kwargs):
        bucket, key, version = self.split_path(path)
        start, end = await self._span(path, start, end)
        (result,) = await self._read([(key, start, end, version_id or version, None)], bucket)
        if isinstance(result, BaseException):
            raise result
        return result

    async def _cat(self, path, recursive=False, on_error="raise", batch_size=None, **kwargs):
        paths = await self._expand_path(path, recursive=recursive)
        results = await self._read_many([(p, None, None) for p in paths])
        out = {}
        for name, result in zip(paths, results):
            if isinstance(result, BaseException):
                if on_error == "raise":
                    raise result
                if on_error == "omit":
                    continue
            out[name] = result
        if (
            len(paths) > 1
            or isinstance(path, list)
            or paths[0] != self._strip_protocol(path)
        ):
            return out
        return out[paths[0]]

    async def _read_many(self, spans):
        """Every ``(path, start, end)`` at once, in one engine call per bucket."""
        by_bucket = {}
        for index, (path, start, end) in enumerate(spans):
            bucket, key, version = self.split_path(path)
            start, end = await self._span(path, start, end)
            by_bucket.setdefault(bucket, []).append((index, (key, start, end, version, None)))
        results = [None] * len(spans)
        for bucket, wanted in by_bucket.items():
            read = await self._read([slice_ for _, slice_ in wanted], bucket)
            for (index, _), result in zip(wanted, read):
                results[index] = result
        return results

    async def _cat_ranges(
        self, paths, starts, ends, max_gap=None, batch_size=None, on_error="return", **kwargs
    ):
        if not isinstance(starts, list):
            starts = [starts] * len(paths)
        if not isinstance(ends, list):
            ends = [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError("cat_ranges needs as many starts and ends as paths")
        results = await self._read_many(list(zip(paths, starts, ends)))
        if on_error != "return":
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results

    # Getting files.

    async def _get_file(self, rpath, lpath, callback=DEFAULT_CALLBACK, version_id=None, **kwargs):
        if os.path.isdir(lpath):
            return
        await self._download([(rpath, lpath)], os.path.dirname(lpath) or ".")

    async def _download(self, pairs, base):
        """One engine download per bucket of ``(rpath, lpath)`` pairs, each landing at its path
        under ``base``; a path that leaves ``base`` fails, and nothing of it is written."""
        base = base.rstrip("/") or "/"
        by_bucket = {}
        for rpath, lpath in pairs:
            bucket, key, _ = self.split_path(rpath)
            if lpath == base:
                root, to = os.path.dirname(base) or ".", os.path.basename(base)
            elif lpath.startswith(base.rstrip("/") + "/"):
                root, to = base, lpath[len(base.rstrip("/")) + 1 :]
            else:
                raise ValueError(f"{lpath} is not under {base}")
            by_bucket.setdefault((bucket, root), []).append((key, to))
        for (bucket, root), files in by_bucket.items():
            await _in_thread(self.store.download, bucket, root, files, [], _state_dir(root))

    async def _get(
        self, rpath, lpath, recursive=False, callback=DEFAULT_CALLBACK, maxdepth=None, **kwargs
    ):
        # fsspec's own path rules (fsspec.asyn.AsyncFileSystem._get), then one download for all
        # the files instead of a download each; no directory is made here, only by the engine,
        # which makes none outside `lpath` whatever a key says.
        self._seen_dirs = set()
        if isinstance(lpath, list) and isinstance(rpath, list):
            rpaths, lpaths = rpath, lpath
            base = os.path.commonpath([os.path.dirname(p) for p in lpaths]) if lpaths else "."
        else:
            source_is_str = isinstance(rpath, str)
            source_not_trailing_sep = source_is_str and not _trailing_sep(rpath)
            rpath = self._strip_protocol(rpath)
            rpaths = await self._expand_path(rpath, recursive=recursive, maxdepth=maxdepth)
            if source_is_str and (not recursive or maxdepth is not None):
                rpaths = [p for p in rpaths if not (_trailing_sep(p) or await self._isdir(p))]
                if not rpaths:
                    return
            lpath = make_path_posix(lpath)
            source_is_file = len(rpaths) == 1
            dest_is_dir = isinstance(lpath, str) and (
                _trailing_sep(lpath) or LocalFileSystem().isdir(lpath)
            )
            exists = source_is_str and (
                (_has_magic(rpath) and source_is_file)
                or (not _has_magic(rpath) and dest_is_dir and source_not_trailing_sep)
            )
            lpaths = other_paths(rpaths, lpath, exists=exists, flatten=not source_is_str)
            base = lpath
        pairs = [
            (r, l) for r, l in zip(rpaths, lpaths) if r not in self._seen_dirs
        ]
        if not pairs:
            return
        callback.set_size(len(pairs))
        await self._download(pairs, base)
        callback.relative_update(len(pairs))

    # Writing.

    async def _put_file(self, lpath, rpath, callback=DEFAULT_CALLBACK, **kwargs):
        if os.path.isdir(lpath):
            return
        bucket, key, _ = self.split_path(rpath)
        if not key:
            raise ValueError(f"{rpath}: a file needs a key under the bucket")
        await _in_thread(self.store.upload, bucket, [(lpath, key)])
        self.invalidate_cache(rpath)

    async def _put(
        self, lpath, rpath, recursive=False, callback=DEFAULT_CALLBACK, maxdepth=None, **kwargs
    ):
        # fsspec's own path rules (fsspec.asyn.AsyncFileSystem._put), then one upload for all
        # the files instead of an upload each.
        if isinstance(lpath, list) and isinstance(rpath, list):
            lpaths, rpaths = lpath, rpath
        else:
            source_is_str = isinstance(lpath, str)
            if source_is_str:
                lpath = make_path_posix(lpath)
            local = LocalFileSystem()
            lpaths = local.expand_path(lpath, recursive=recursive, maxdepth=maxdepth)
            if source_is_str and (not recursive or maxdepth is not None):
                lpaths = [p for p in lpaths if not (_trailing_sep(p) or local.isdir(p))]
                if not lpaths:
                    return
            source_is_file = len(lpaths) == 1
            dest_is_dir = isinstance(rpath, str) and (
                _trailing_sep(rpath) or await self._isdir(rpath)
            )
            rpath = self._strip_protocol(rpath)
            exists = source_is_str and (
                (_has_magic(lpath) and source_is_file)
                or (not _has_magic(lpath) and dest_is_dir and not _trailing_sep(lpath))
            )
            rpaths = other_paths(lpaths, rpath, exists=exists, flatten=not source_is_str)
        by_bucket = {}
        for local_path, remote in zip(lpaths, rpaths):
            if os.path.isdir(local_path):
                continue
            bucket, key, _ = self.split_path(remote)
            if not key:
                raise ValueError(f"{remote}: a file needs a key under the bucket")
            by_bucket.setdefault(bucket, []).append((local_path, key))
        callback.set_size(sum(len(files) for files in by_bucket.values()))
        for bucket, files in by_bucket.items():
            await _in_thread(self.store.upload, bucket, files)
            callback.relative_update(len(files))
        self.invalidate_cache(rpath if isinstance(rpath, str) else None)

    async def _pipe_file(self, path, data, **kwargs):
        bucket, key, _ = self.split_path(path)
        await _in_thread(self.store.put, bucket, key, bytes(data))
        self.invalidate_cache(path)

    async def _rm_file(self, path, **kwargs):
        bucket, key, _ = self.split_path(path)
        await _in_thread(self.store.remove, bucket, key)
        self.invalidate_cache(path)

    async def _rm(self, path, recursive=False, maxdepth=None, **kwargs):
        self._seen_dirs = set()
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        files = []
        for p in paths:
            if p in self._seen_dirs or not self.split_path(p)[1]:
                continue
            files.append(p)
        await asyncio.gather(*[self._rm_file(p) for p in files])
        for p in paths:
            self.invalidate_cache(p)

    async def _cp_file(self, path1, path2, **kwargs):
        bucket1, key1, _ = self.split_path(path1)
        bucket2, key2, _ = self.split_path(path2)
        if bucket1 != bucket2:
            data = await self._cat_file(path1)
            await self._pipe_file(path2, data)
        else:
            await _in_thread(self.store.copy, bucket1, key1, key2)
        self.invalidate_cache(path2)

    async def _mkdir(self, path, create_parents=True, **kwargs):
        # S3 has no directories: one exists while a key is under it.
        pass

    async def _makedirs(self, path, exist_ok=False):
        pass

    def invalidate_cache(self, path=None):
        if path is None:
            self.dircache.clear()
            return
        path = self._strip_protocol(path)
        while path:
            self.dircache.pop(path, None)
            path = path.rsplit("/", 1)[0] if "/" in path else ""

    def _open(
        self,
        path,
        mode="rb",
        block_size=None,
        autocommit=True,
        cache_type=None,
        cache_options=None,
        **kwargs,
    ):
        return PlxFile(
            self,
            path,
            mode=mode,
            block_size=block_size or self.default_block_size,
            autocommit=autocommit,
            cache_type=cache_type or self.default_cache_type,
            cache_options=cache_options,
        )

    mkdir = sync_wrapper(_mkdir)
    makedirs = sync_wrapper(_makedirs)


class PlxFile(AbstractBufferedFile):
    """A file of the store: read in ranges (read ahead by fsspec's cache), each range of the
    object first seen (its ETag); written to a local temporary (under ``TMPDIR``) and sent
    through the upload engine when closed, so nothing is visible before then, and nothing at all
    when the ``with`` block it is written in raises."""

    def __init__(self, fs, path, mode="rb", **kwargs):
        super().__init__(fs, path, mode=mode, **kwargs)
        self.bucket, self.key, self.version = fs.split_path(path)
        self._spool = None
        if "r" in mode:
            self.etag = (self.details.get("ETag") or "").strip('"') or None

    def _fetch_range(self, start, end):
        (result,) = self.fs.store.read(
            self.bucket, [(self.key, start, end, self.version, self.etag)]
        )
        if isinstance(result, BaseException):
            raise result
        return result

    def _initiate_upload(self):
        self._spool = tempfile.NamedTemporaryFile(prefix=".plx-", delete=False)

    def _upload_chunk(self, final=False):
        if self._spool is None:
            self._initiate_upload()
        self.buffer.seek(0)
        shutil.copyfileobj(self.buffer, self._spool)
        if not final:
            return True
        self._spool.close()
        try:
            self.fs.store.upload(self.bucket, [(self._spool.name, self.key)])
        finally:
            os.unlink(self._spool.name)
            self._spool = None
        self.fs.invalidate_cache(self.path)
        return True

    def __exit__(self, kind, error, traceback):
        if kind is not None and self.mode != "rb":
            self.discard()
            self.closed = True
            return
        self.close()

    def discard(self):
        if self._spool is not None:
            self._spool.close()
            os.unlink(self._spool.name)
            self._spool = None
