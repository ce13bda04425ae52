"""The datasets: every object exactly once across ranks and workers, a batch read at once, a
pickled dataset in a forked worker, a manifest's pin honoured, the node cache read as a pull
reads it."""

import multiprocessing
import os
import pickle
from pathlib import Path

import pytest
import yaml

import plx_connections
from conftest import BUCKETS, client, seed
from plx_connections.data import IterableDataset, MapDataset

OBJECTS = {f"{index:03}.bin": bytes([index]) * (100 + index) for index in range(23)}


@pytest.fixture
def dataset_prefix(prefix):
    seed("moto", {f"{prefix}/{key}": body for key, body in OBJECTS.items()})
    return prefix


def test_a_map_dataset_reads_by_index_and_by_batch(dataset_prefix):
    data = MapDataset("moto-data", prefix=dataset_prefix)
    assert len(data) == len(OBJECTS)
    bodies = list(OBJECTS.values())
    assert data[4] == bodies[4]
    assert data.__getitems__([7, 0, 22]) == [bodies[7], bodies[0], bodies[22]]
    with pytest.raises(IndexError):
        data[len(OBJECTS)]


def test_sharding_covers_every_object_once(dataset_prefix):
    seen = []
    for rank in range(3):
        data = IterableDataset("moto-data", prefix=dataset_prefix, rank=rank, world_size=3, read_ahead=4)
        for worker in range(2):
            seen.extend(item.key for item in data.shard(worker, 2))
    assert sorted(seen) == sorted(f"{dataset_prefix}/{key}" for key in OBJECTS)
    assert len(seen) == len(set(seen))
    whole = IterableDataset("moto-data", prefix=dataset_prefix, read_ahead=5, transform=lambda item, body: (item.key, body))
    assert [body for _, body in whole] == list(OBJECTS.values())


def _first_in_child(data, queue):
    queue.put(data[0])


def test_a_pickled_dataset_reads_in_a_forked_worker(dataset_prefix):
    data = MapDataset("moto-data", prefix=dataset_prefix)
    assert data[1] == list(OBJECTS.values())[1]  # the parent's runtime exists before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_first_in_child, args=(pickle.loads(pickle.dumps(data)), queue))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == list(OBJECTS.values())[0]


def test_a_manifest_lists_nothing_and_reads_only_what_it_pinned(dataset_prefix, tmp_path):
    manifest = tmp_path / "manifest.json"
    plx_connections.download(
        "moto-data", dirs=[dataset_prefix], to=str(tmp_path / "data"), manifest=str(manifest)
    )
    # Objects put after the pin are not in the dataset.
    seed("moto", {f"{dataset_prefix}/zzz-later.bin": b"later"})
    data = MapDataset("moto-data", manifest=manifest)
    assert len(data) == len(OBJECTS)
    assert data[0] == list(OBJECTS.values())[0]
    # A pinned object that changed is refused, not read.
    client("moto").put_object(Bucket=BUCKETS["moto"], Key=f"{dataset_prefix}/000.bin", Body=b"changed")
    with pytest.raises(plx_connections.PlxError, match="changed"):
        data[0]


def _entries(cache):
    return sorted(path for path in (cache / "v1" / "objects").rglob("*") if path.is_file())


def test_datasets_read_what_a_pull_put_in_the_node_cache_and_check_it(dataset_prefix, tmp_path):
    cache = tmp_path / "node-cache"
    plx_connections.download("moto-data", dirs=[dataset_prefix], to=str(tmp_path / "pulled"), cache=str(cache))
    entries = _entries(cache)
    assert len(entries) == len(OBJECTS)
    # A read refreshes an entry's place in the LRU order: served entries are touched.
    for entry in entries:
        os.utime(entry, (1_000_000_000, 1_000_000_000))
    data = MapDataset("moto-data", prefix=dataset_prefix, cache=cache)
    assert data.__getitems__(list(range(len(data)))) == list(OBJECTS.values())
    assert all(entry.stat().st_mtime > 1_000_000_000 for entry in entries)

    # A damaged entry (same length, other bytes) is never handed out: the store's bytes are,
    # and the entry goes.
    damaged = max(entries, key=lambda entry: entry.stat().st_size)
    damaged.write_bytes(b"\0" * damaged.stat().st_size)
    assert sorted(IterableDataset("moto-data", prefix=dataset_prefix, cache=cache)) == sorted(OBJECTS.values())
    assert not damaged.exists()

    # An object written again after the pull has another ETag, so another entry: the new bytes.
    key = f"{dataset_prefix}/005.bin"
    client("moto").put_object(Bucket=BUCKETS["moto"], Key=key, Body=b"written again")
    fresh = MapDataset("moto-data", prefix=dataset_prefix, cache=cache)
    assert fresh[5] == b"written again"


def test_the_node_cache_never_serves_what_the_store_no_longer_has(dataset_prefix, tmp_path):
    cache = tmp_path / "node-cache"
    plx_connections.download("moto-data", dirs=[dataset_prefix], to=str(tmp_path / "pulled"), cache=str(cache))
    data = MapDataset("moto-data", prefix=dataset_prefix, cache=cache)
    # Listed, cached, then deleted from the store: this pod's HEAD fails, so the cache does not
    # answer for the store; the read goes to the store and fails as a missing object.
    client("moto").delete_object(Bucket=BUCKETS["moto"], Key=f"{dataset_prefix}/003.bin")
    with pytest.raises(FileNotFoundError):
        data[3]


CASES = Path(__file__).resolve().parents[4] / "conformance" / "transfer"


@pytest.mark.parametrize("case", sorted(CASES.glob("cache-*.yaml")), ids=lambda path: path.stem)
def test_datasets_follow_the_node_cache_conformance_cases(case, prefix, tmp_path):
    """The engine's node-cache cases, read through a dataset: the same objects, the cache
    filled by the same pull, tampered with, changed or unusable as the case says; the bytes the
    case's tree expects, and as many objects from the cache (told by the entries a read
    touched) as it says."""
    spec = yaml.safe_load(case.read_text())
    under = spec["prefix"]
    seed("moto", {f"{prefix}/{key}": body for key, body in spec["objects"].items()})
    cache = tmp_path / "node-cache"
    if spec["cache"].get("unusable"):
        cache.write_text("not a directory")
    if spec["cache"].get("warm"):
        plx_connections.download("moto-data", dirs=[f"{prefix}/{under}"], to=str(tmp_path / "pulled"), cache=str(cache))
    entries = _entries(cache) if cache.is_dir() else []
    for entry in entries:
        if spec["cache"].get("tamper"):
            entry.write_bytes(bytes(byte ^ 0x20 for byte in entry.read_bytes()))
        os.utime(entry, (1_000_000_000, 1_000_000_000))
    for key, body in spec.get("changed", {}).items():
        client("moto").put_object(Bucket=BUCKETS["moto"], Key=f"{prefix}/{key}", Body=body.encode())
    data = MapDataset("moto-data", prefix=f"{prefix}/{under}", cache=cache)
    got = {item.key[len(f"{prefix}/{under}/") :]: body for item, body in zip(data.items, data.__getitems__(range(len(data))))}
    assert got == {path: text.encode() for path, text in spec["expect"]["tree"].items()}
    served = [entry for entry in entries if entry.exists() and entry.stat().st_mtime > 1_000_000_000]
    assert len(served) == spec["expect"]["from_cache"]
