"""The datasets: every object exactly once across ranks and workers, a batch read at once, a
pickled dataset in a forked worker, a manifest's pin honoured."""

import multiprocessing
import pickle

import pytest

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
