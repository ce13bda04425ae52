"""Datasets for training loops: a connection's objects under a prefix, or those a manifest
pinned, read through the engine. No dependency on torch: they are the shapes its DataLoader
takes (``__len__``/``__getitem__``/``__getitems__``, or ``__iter__``), and work without it.

- ``MapDataset`` reads a batch at once (``__getitems__``: every object of it in flight
  together, under the engine's in-flight controller), not one GET after another.
- ``IterableDataset`` reads ``read_ahead`` objects at a time, the next batch while the last is
  handed out, and shards by rank and world size (``RANK``/``WORLD_SIZE`` as torch.distributed sets them, or given) and by DataLoader
  worker: each object is read by exactly one worker of one rank.
- Both list once (one flat listing, kept for every epoch); over a manifest they list nothing and
  read the pinned versions (where the store versions objects, else only while the ETag is the
  recorded one: a changed object raises).
- Both read through the node cache a pull with ``plx-init --cache`` filled (``cache``, else
  ``PLX_CACHE_DIR`` as plx-init reads it), as plx-init does: an object listed with an ETag is
  served from the node when the cache holds it under that ETag, this pod's HEAD shows the store
  has it still, and the copy matches the store's CRC or the ETag's MD5; otherwise, and for
  pinned objects, from the store.
- Both pickle as their connection's name and their keys, never credentials: a forked or spawned
  worker makes its own runtime and client on its first read.
"""

import os
from concurrent.futures import ThreadPoolExecutor

from . import _engine

__all__ = ["MapDataset", "IterableDataset", "Item"]


class Item:
    """One object of a dataset: its key (under the bucket), size, version and ETag (a pin's, or
    as the listing gave it)."""

    __slots__ = ("key", "size", "version", "etag")

    def __init__(self, key, size, version=None, etag=None):
        self.key, self.size, self.version, self.etag = key, size, version, etag

    def __repr__(self):
        return f"Item({self.key!r}, {self.size})"

    def __eq__(self, other):
        return isinstance(other, Item) and (self.key, self.version) == (other.key, other.version)

    def __hash__(self):
        return hash((self.key, self.version))

    def __getstate__(self):
        return (self.key, self.size, self.version, self.etag)

    def __setstate__(self, state):
        self.key, self.size, self.version, self.etag = state


def _items_under(store, bucket, prefix):
    prefix = prefix.strip("/")
    objects, _ = store.list(bucket, f"{prefix}/" if prefix else "", False)
    return [Item(key, size, None, etag) for key, size, etag, _, _ in objects if not key.endswith("/")]


def _items_pinned(manifest, connection):
    bucket, objects = _engine.pinned(os.fspath(manifest), connection)
    return bucket, [Item(key, size, version, etag) for key, size, version, etag in objects]


class _Objects:
    """What both datasets share: the connection, its objects, and reads of them."""

    def __init__(self, connection, prefix="", manifest=None, transform=None, cache=None):
        self.connection = connection
        self.transform = transform
        self.cache = None if cache is None else os.fspath(cache)
        # A pin's ETag holds the reads to the object recorded; a listing's only names the
        # node cache's entry.
        self.pinned = manifest is not None
        self._store = _engine.Store.from_name(connection)
        if manifest is not None:
            self.bucket, self.items = _items_pinned(manifest, connection)
        else:
            self.bucket = self._store.bucket
            under = "/".join(part for part in (self._store.prefix, prefix.strip("/")) if part)
            self.items = _items_under(self._store, self.bucket, under)

    def __getstate__(self):
        state = dict(self.__dict__)
        # Made again from the connection's name where the dataset is unpickled.
        state["_store"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._store = _engine.Store.from_name(self.connection)

    def _read(self, items):
        if self.pinned:
            read = self._store.read(
                self.bucket, [(item.key, None, None, item.version, item.etag) for item in items]
            )
        else:
            read = self._store.read_listed(
                self.bucket, [(item.key, item.size, item.etag) for item in items], self.cache
            )
        out = []
        for item, body in zip(items, read):
            if isinstance(body, BaseException):
                raise body
            out.append(self.transform(item, body) if self.transform else body)
        return out


class MapDataset(_Objects):
    """The objects under ``prefix`` of ``connection`` (or those ``manifest`` pinned), by index:
    ``dataset[i]`` is the i-th object's bytes (or ``transform(item, bytes)``), in key order."""

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self._read([self.items[index]])[0]

    def __getitems__(self, indices):
        """A batch: every object of it read at once."""
        return self._read([self.items[index] for index in indices])


def _worker():
    """This process's DataLoader worker and their count: (0, 1) outside one, or without torch."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return 0, 1
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class IterableDataset(_Objects):
    """The objects under ``prefix`` of ``connection`` (or those ``manifest`` pinned), in key
    order, this rank's and this worker's share only, read ``read_ahead`` at a time."""

    def __init__(
        self,
        connection,
        prefix="",
        manifest=None,
        transform=None,
        rank=None,
        world_size=None,
        read_ahead=64,
        cache=None,
    ):
        super().__init__(
            connection, prefix=prefix, manifest=manifest, transform=transform, cache=cache
        )
        self.rank = int(os.environ.get("RANK", 0)) if rank is None else rank
        self.world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not within world size {self.world_size}")
        self.read_ahead = max(1, read_ahead)

    def shard(self, worker=None, workers=None):
        """The items this rank's ``worker`` of ``workers`` reads (this process's by default)."""
        if worker is None or workers is None:
            worker, workers = _worker()
        share = self.rank * workers + worker
        return self.items[share :: self.world_size * workers]

    def __iter__(self):
        items = self.shard()
        batches = [items[start : start + self.read_ahead] for start in range(0, len(items), self.read_ahead)]
        if not batches:
            return
        # The next batch is read while this one is handed out: the engine lets go of the GIL,
        # so the training loop and the reads overlap.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plx-read-ahead") as ahead:
            coming = ahead.submit(self._read, batches[0])
            for following in batches[1:] + [None]:
                batch = coming.result()
                if following is not None:
                    coming = ahead.submit(self._read, following)
                yield from batch
