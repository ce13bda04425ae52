"""One Python reader on one workload, as a training process reads: `readers.py SPEC`.

The spec (JSON, written by plx-bench's `python.rs`) names the reader, the mode, the server and
the objects. The process imports its library, makes its client and reads the first object once
(the first connection), then reads the objects while timing itself: that is the warm figure, as
a training loop sees it; GNU time around the whole process gives the fresh one.

Modes, the same for every reader:
- `memory`: every object's bytes, in chunks of `chunk` objects read at once (each library's own
  way of reading many: `cat` of many paths for a filesystem, a thread pool for boto3 and the
  Mountpoint client, `asyncio.gather` for obstore); each body hashed, then dropped.
- `dataset`: as a DataLoader with `batch` per step and no workers: our `MapDataset` answers
  `__getitems__` (the batch at once); the others have no dataset over a plain S3 prefix that
  works without torch, so each reads a batch as in `memory`, which is their best case.
- `disk`: every object to `to/<key>`: `get` of the prefix for a filesystem, the others one
  file per object from their pool (boto3's `download_file`).

It prints one line, `plx-reader {json}`, with the warm seconds and CPU seconds, and writes the
SHA-256 of every body read to `digests` (memory and dataset) for the harness to check.
"""

import asyncio
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Fs:
    """An fsspec filesystem: Polyaxon's `get_fs_from_name` (s3fs) or ours, one call per chunk."""

    def __init__(self, spec, module):
        if module == "polyaxon":
            from polyaxon.fs import get_fs_from_name
        else:
            from plx_connections import get_fs_from_name
        self.spec = spec
        self.fs = get_fs_from_name("bench")
        self.fs.cat_file(self.path(spec["keys"][0][0]))

    def path(self, key):
        return f"{self.spec['bucket']}/{key}"

    def read(self, keys):
        paths = [self.path(key) for key in keys]
        got = self.fs.cat(paths)
        return [(key, got[path]) for key, path in zip(keys, paths)]

    def disk(self, prefix, to):
        self.fs.get(self.path(prefix), os.path.join(to, prefix), recursive=True)


class Ours(Fs):
    def __init__(self, spec):
        super().__init__(spec, "ours")
        self.dataset = None
        if spec["mode"] == "dataset":
            from plx_connections.data import MapDataset

            # One listing, kept for every epoch: made before the timed reads.
            self.dataset = MapDataset("bench", prefix=spec["prefix"])
            self.index = {item.key: n for n, item in enumerate(self.dataset.items)}

    def batch(self, keys):
        if self.dataset is None:
            return self.read(keys)
        bodies = self.dataset.__getitems__([self.index[key] for key in keys])
        return list(zip(keys, bodies))


class Polyaxon(Fs):
    def __init__(self, spec):
        super().__init__(spec, "polyaxon")


class Pool:
    """A client whose calls block: a thread pool of `threads` reads a chunk."""

    threads = 64

    def __init__(self, spec):
        self.spec = spec
        self.pool = ThreadPoolExecutor(self.threads)
        self.get(spec["keys"][0][0])

    def read(self, keys):
        return list(zip(keys, self.pool.map(self.get, keys)))

    def disk(self, prefix, to):
        keys = [key for key, _ in self.spec["keys"]]
        list(self.pool.map(lambda key: self.save(key, os.path.join(to, key)), keys))

    def save(self, key, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(self.get(key))


class Boto3(Pool):
    """boto3's client in a thread pool, its connection pool as large as the pool."""

    def __init__(self, spec):
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "s3",
            endpoint_url=spec["endpoint"],
            region_name=spec["region"],
            config=Config(
                max_pool_connections=self.threads,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        super().__init__(spec)

    def get(self, key):
        return self.client.get_object(Bucket=self.spec["bucket"], Key=key)["Body"].read()

    def save(self, key, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.client.download_file(self.spec["bucket"], key, path)


class Mountpoint(Pool):
    """s3torchconnector's engine, the Mountpoint client (s3torchconnectorclient), as its
    `S3MapDataset` calls it: one `get_object` stream per object."""

    def __init__(self, spec):
        from s3torchconnectorclient._mountpoint_s3_client import MountpointS3Client

        self.client = MountpointS3Client(
            spec["region"], endpoint=spec["endpoint"], force_path_style=True
        )
        super().__init__(spec)

    def get(self, key):
        return b"".join(self.client.get_object(self.spec["bucket"], key))


class Obstore:
    """obstore's `S3Store`, many reads at once through `asyncio.gather` on one event loop."""

    def __init__(self, spec):
        import obstore
        from obstore.store import S3Store

        self.obstore = obstore
        self.spec = spec
        self.store = S3Store(
            spec["bucket"],
            endpoint=spec["endpoint"],
            region=spec["region"],
            access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )
        self.loop = asyncio.new_event_loop()
        self.read([spec["keys"][0][0]])

    async def get(self, key):
        result = await self.obstore.get_async(self.store, key)
        return await result.bytes_async()

    def read(self, keys):
        async def all():
            return await asyncio.gather(*(self.get(key) for key in keys))

        return list(zip(keys, self.loop.run_until_complete(all())))

    def disk(self, prefix, to):
        async def save(key):
            body = await self.get(key)
            path = os.path.join(to, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(body)

        async def all(keys):
            await asyncio.gather(*(save(key) for key in keys))

        for part in chunks([key for key, _ in self.spec["keys"]], self.spec["chunk"]):
            self.loop.run_until_complete(all(part))


READERS = {
    "plx_connections": Ours,
    "polyaxon": Polyaxon,
    "boto3": Boto3,
    "obstore": Obstore,
    "mountpoint": Mountpoint,
}


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    started = time.perf_counter()
    reader = READERS[spec["reader"]](spec)
    ready = time.perf_counter()
    keys = [key for key, _ in spec["keys"]]
    digests, size = {}, 0
    # Hashing is the harness's check, not the reader's work: its time is taken out (between
    # chunks nothing is in flight, so the subtraction is exact).
    hashing_wall = hashing_cpu = 0.0
    cpu = time.process_time()
    wall = time.perf_counter()
    if spec["mode"] == "disk":
        reader.disk(spec["prefix"], spec["to"])
        size = sum(size for _, size in spec["keys"])
    else:
        step = spec["chunk"] if spec["mode"] == "memory" else spec["batch"]
        read = reader.batch if spec["mode"] == "dataset" and hasattr(reader, "batch") else reader.read
        for part in chunks(keys, step):
            got = read(part)
            hashing = (time.perf_counter(), time.process_time())
            for key, body in got:
                size += len(body)
                digests[key] = hashlib.sha256(body).hexdigest()
            del got
            hashing_wall += time.perf_counter() - hashing[0]
            hashing_cpu += time.process_time() - hashing[1]
    warm = time.perf_counter() - wall - hashing_wall
    warm_cpu = time.process_time() - cpu - hashing_cpu
    if spec["mode"] != "disk":
        with open(spec["digests"], "w") as out:
            json.dump(digests, out)
    print(
        "plx-reader "
        + json.dumps(
            {
                "setup": ready - started,
                "warm": warm,
                "warm_cpu": warm_cpu,
                "objects": len(keys),
                "bytes": size,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
