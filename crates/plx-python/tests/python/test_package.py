"""What the package promises beyond Polyaxon's behaviour: its errors, its pickles, plx-init's
pulls and uploads, the fault proxy's broken connections, hostile keys."""

import asyncio
import hashlib
import multiprocessing
import os
import pickle

import fsspec.implementations.local
import pytest

import plx_connections
from conftest import BUCKETS, CATALOG, LOCAL, SERVERS, client, seed


def test_every_polyaxon_fs_name_is_here():
    import polyaxon._fs.fs as polyaxons
    import polyaxon.fs

    names = {name for name in dir(polyaxons) if not name.startswith("_")} | {
        name for name in dir(polyaxon.fs) if not name.startswith("_")
    }
    wanted = {name for name in names if name.startswith(("get_", "close_"))}
    assert wanted <= set(dir(plx_connections)), wanted - set(dir(plx_connections))


def test_an_unknown_connection_names_the_known_ones():
    with pytest.raises(plx_connections.PlxError) as raised:
        plx_connections.get_fs_from_name("nope")
    assert "nope" in str(raised.value)
    assert "moto-data" in str(raised.value)


def test_a_mount_is_a_local_filesystem():
    fs = plx_connections.get_fs_from_name("local")
    assert isinstance(fs, fsspec.implementations.local.LocalFileSystem)
    assert plx_connections.get_sync_fs_from_connection(None).__class__.__name__ == "LocalFileSystem"


def test_no_secret_in_repr_pickle_or_error():
    fs = plx_connections.get_fs_from_name("s3s-data")
    secret = SERVERS["s3s"]["secret_key"]
    assert secret not in repr(fs)
    assert secret not in repr(fs.store)
    assert secret.encode() not in pickle.dumps(fs.store)
    with pytest.raises(FileNotFoundError) as raised:
        fs.cat(f"{BUCKETS['s3s']}/no/such/key")
    assert secret not in str(raised.value)
    assert "no/such/key" in str(raised.value)


def test_no_secret_in_a_pickle_of_a_connection_whose_env_holds_it(prefix):
    seed("s3s", {f"{prefix}/x.txt": b"x"})
    secret = SERVERS["s3s"]["secret_key"].encode()
    fs = plx_connections.get_fs_from_name("s3s-env", skip_instance_cache=True)
    assert fs.cat(f"{BUCKETS['s3s']}/{prefix}/x.txt") == b"x"
    assert secret not in pickle.dumps(fs)
    assert secret not in pickle.dumps(fs.store)
    assert pickle.loads(pickle.dumps(fs)).cat(f"{BUCKETS['s3s']}/{prefix}/x.txt") == b"x"


def test_s3fs_keywords_are_taken_and_others_refused():
    fs = plx_connections.get_fs_from_name(
        "moto-data",
        config_kwargs={"max_pool_connections": 5},
        client_kwargs={"verify": False},
        default_block_size=2**20,
        use_listings_cache=True,
        skip_instance_cache=True,
    )
    assert fs.blocksize == 2**20 or fs.default_block_size == 2**20
    with pytest.raises(TypeError, match="not_an_s3fs_keyword"):
        plx_connections.get_fs_from_name("moto-data", not_an_s3fs_keyword=1)


def test_a_denied_read_is_a_permission_error(tmp_path):
    mount = tmp_path / "wrong"
    mount.mkdir()
    config = SERVERS["s3s"]
    for key, value in (
        ("AWS_ACCESS_KEY_ID", config["access_key"]),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ("AWS_ENDPOINT_URL", config["endpoint"]),
        ("AWS_REGION", config["region"]),
    ):
        (mount / key).write_text(value)
    fs = plx_connections.get_sync_fs_from_connection(
        {
            "name": "wrong",
            "kind": "s3",
            "schema": {"bucket": f"s3://{BUCKETS['s3s']}"},
            "secret": {"name": "wrong", "mountPath": str(mount)},
        }
    )
    with pytest.raises(PermissionError):
        fs.ls(BUCKETS["s3s"])


def test_the_async_filesystem(prefix):
    seed("moto", {f"{prefix}/a.txt": b"a", f"{prefix}/b/c.txt": b"c"})

    async def main():
        fs = await plx_connections.get_async_fs_from_connection(CATALOG["connections"][0])
        root = f"{BUCKETS['moto']}/{prefix}"
        listed = await fs._ls(root, detail=False)
        read = await fs._cat([f"{root}/a.txt", f"{root}/b/c.txt"])
        await plx_connections.close_fs(fs)
        return listed, read

    listed, read = asyncio.run(main())
    root = f"{BUCKETS['moto']}/{prefix}"
    assert listed == [f"{root}/a.txt", f"{root}/b"]
    assert read == {f"{root}/a.txt": b"a", f"{root}/b/c.txt": b"c"}


def _read_in_child(fs, path, queue):
    queue.put(fs.cat(path))


def test_a_pickled_filesystem_reads_in_a_forked_process(prefix):
    seed("s3s", {f"{prefix}/x.bin": b"forked"})
    fs = plx_connections.get_fs_from_name("s3s-data", skip_instance_cache=True)
    path = f"{BUCKETS['s3s']}/{prefix}/x.bin"
    assert fs.cat(path) == b"forked"  # the parent's runtime and client exist before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(pickle.loads(pickle.dumps(fs)), path, queue))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == b"forked"


def test_download_is_plx_inits_pull(prefix, tmp_path):
    seed("moto", {f"{prefix}/d/1.txt": b"1", f"{prefix}/d/2/3.txt": b"3", f"{prefix}/f.txt": b"f"})
    seen = []
    record = plx_connections.download(
        "moto-data",
        dirs=[f"{prefix}/d"],
        files=[f"{prefix}/f.txt:renamed.txt"],
        to=str(tmp_path),
        manifest=str(tmp_path / "manifest.json"),
        progress=lambda bytes_, objects: seen.append((bytes_, objects)),
    )
    assert record["ok"] and record["summary"]["objects"] == 3
    assert (tmp_path / prefix / "d" / "2" / "3.txt").read_bytes() == b"3"
    assert (tmp_path / "renamed.txt").read_bytes() == b"f"
    assert seen and seen[-1] == (3, 3)
    assert (tmp_path / "manifest.json").exists()
    with pytest.raises(plx_connections.PlxError, match="missing"):
        plx_connections.download("moto-data", files=[f"{prefix}/missing"], to=str(tmp_path))
    record = plx_connections.download(
        "moto-data", files=[f"{prefix}/missing"], to=str(tmp_path), check=False
    )
    assert not record["ok"] and record["failures"]


def test_upload_is_plx_inits_upload(prefix, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.bin").write_bytes(b"weights")
    record = plx_connections.upload(tmp_path / "out", connection="moto-data", to=prefix)
    assert record["ok"] and record["target"].endswith(prefix)
    body = client("moto").get_object(Bucket=BUCKETS["moto"], Key=f"{prefix}/model.bin")["Body"]
    assert body.read() == b"weights"


def test_get_never_writes_outside_its_local_path(prefix, tmp_path):
    # moto keeps keys as given; a file-backed store would refuse them.
    seed("moto", {f"{prefix}/ok.txt": b"ok", f"{prefix}/../../escaped.txt": b"x", f"{prefix}/a/../../../escaped2.txt": b"x"})
    fs = plx_connections.get_fs_from_name("moto-data")
    target = tmp_path / "deep" / "target"
    target.mkdir(parents=True)
    with pytest.raises(Exception):
        fs.get(f"{BUCKETS['moto']}/{prefix}", str(target) + "/", recursive=True)
    for parent, _, files in os.walk(tmp_path):
        for name in files:
            assert os.path.join(parent, name).startswith(str(target)), (parent, name)
    assert not any(name.startswith("escaped") for name in os.listdir(tmp_path))


def test_reads_through_a_faulty_network_are_right_or_raise(prefix):
    objects = {f"{prefix}/{index}.bin": os.urandom(50_000 + index) for index in range(40)}
    seed("s3s", objects)
    fs = plx_connections.get_fs_from_name("faulty-data")
    bucket = BUCKETS["s3s"]
    results = fs.cat([f"{bucket}/{key}" for key in objects], on_error="return")
    right = 0
    for key, body in objects.items():
        got = results[f"{bucket}/{key}"]
        if isinstance(got, BaseException):
            continue
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest(), key
        right += 1
    assert right > 0
    ranges = fs.cat_ranges([f"{bucket}/{key}" for key in objects], 100, 40_000)
    for (key, body), got in zip(objects.items(), ranges):
        if not isinstance(got, BaseException):
            assert got == body[100:40_000], key


def test_corrupt_and_slow_bodies_never_reach_a_caller(prefix, tmp_path):
    """Through a path that flips a byte of half the object bodies (length and headers as the
    store sent them) and trickles a fifth: cat, ranges, get and a dataset give the stored bytes,
    every one (a corrupt whole body is read again; its repeat comes through)."""
    from plx_connections.data import MapDataset

    objects = {f"{prefix}/k/{index}.bin": os.urandom(20_000 + index) for index in range(24)}
    seed("s3s", objects)
    fs = plx_connections.get_fs_from_name("corrupt-data")
    bucket = BUCKETS["s3s"]
    got = fs.cat([f"{bucket}/{key}" for key in objects])
    assert {key[len(bucket) + 1 :]: body for key, body in got.items()} == objects
    target = tmp_path / "got"
    fs.get(f"{bucket}/{prefix}/k", str(target) + "/", recursive=True)
    for key, body in objects.items():
        assert (target / "k" / key.rsplit("/", 1)[1]).read_bytes() == body, key
    data = MapDataset("corrupt-data", prefix=f"{prefix}/k")
    assert data.__getitems__(list(range(len(data)))) == [objects[item.key] for item in data.items]
    with fs.open(f"{bucket}/{prefix}/k/3.bin", "rb") as file:
        assert file.read() == objects[f"{prefix}/k/3.bin"]


@pytest.mark.parametrize("server", ["moto", "s3s"])
def test_a_file_whose_object_changes_while_open_raises_rather_than_mix_versions(server, prefix):
    """A file read in ranges is pinned to the ETag it first saw: once the object is written
    again (same size, other bytes), the next range raises, naming the change, on a store that
    honours If-Match (moto) and on one that ignores it (s3s-fs)."""
    key = f"{prefix}/changing.bin"
    old, new = os.urandom(3 << 20), os.urandom(3 << 20)
    seed(server, {key: old})
    fs = plx_connections.get_fs_from_name(f"{server}-data")
    with fs.open(f"{BUCKETS[server]}/{key}", "rb", block_size=1 << 20, cache_type="none") as file:
        assert file.read(1 << 20) == old[: 1 << 20]
        seed(server, {key: new})
        with pytest.raises(plx_connections.PlxError, match="changed while it was read"):
            file.read(1 << 20)


def test_a_get_of_an_object_changed_between_its_parts_raises_and_lands_nothing(tmp_path):
    """Through a proxy that overwrites the object once its first ranged part is answered (the
    other parts then meet the new bytes): the get raises, naming the change and what to do, and
    nothing lands, not even a temporary; read again, the object is the new version, whole."""
    config = SERVERS["changing"]
    bucket, key = config["bucket"], config["key"]
    client("changing").put_object(Bucket=bucket, Key=key, Body=os.urandom(config["size"]))
    fs = plx_connections.get_fs_from_name("changing-data")
    with pytest.raises(plx_connections.PlxError, match="changed during the download.*run again"):
        fs.get(f"{bucket}/{key}", str(tmp_path / "big.bin"))
    assert list(tmp_path.iterdir()) == []
    assert hashlib.sha256(fs.cat(f"{bucket}/{key}")).hexdigest() == config["new_sha256"]


def test_gets_and_datasets_through_a_faulty_network_are_right_or_raise(prefix, tmp_path):
    from plx_connections.data import MapDataset

    objects = {f"{prefix}/d/{index}.bin": os.urandom(30_000 + index) for index in range(30)}
    seed("s3s", objects)
    fs = plx_connections.get_fs_from_name("faulty-data")
    target = tmp_path / "got"
    try:
        fs.get(f"{BUCKETS['s3s']}/{prefix}/d", str(target) + "/", recursive=True)
        raised = False
    except OSError:
        raised = True
    # Whatever landed is whole: a file is there with its bytes, or not there at all.
    for key, body in objects.items():
        landed = target / "d" / key.rsplit("/", 1)[1]
        if landed.exists():
            assert landed.read_bytes() == body, key
        else:
            assert raised, key
    assert not [p for p in target.rglob("*") if p.name.endswith(".plx-part")]
    data = MapDataset("faulty-data", prefix=f"{prefix}/d")
    bodies = [objects[item.key] for item in data.items]
    try:
        batch = data.__getitems__(list(range(len(data))))
    except OSError:
        return
    assert batch == bodies


def test_get_reads_through_the_node_cache_plx_init_fills(prefix, tmp_path, monkeypatch):
    import json

    objects = {f"{prefix}/c/{index}.bin": os.urandom(5_000 + index) for index in range(5)}
    seed("moto", objects)
    monkeypatch.setenv("PLX_CACHE_DIR", str(tmp_path / "node-cache"))
    # plx-init's pull (here its call) fills the node's cache...
    record = plx_connections.download("moto-data", dirs=[f"{prefix}/c"], to=str(tmp_path / "first"))
    assert record["summary"]["from_cache"]["objects"] == 0
    # ...and the job's own reads are served from it, checked as plx-init checks them.
    fs = plx_connections.get_fs_from_name("moto-data")
    again = json.loads(
        fs.store.download(BUCKETS["moto"], str(tmp_path / "second"), [], [(f"{prefix}/c", "c")])
    )
    assert again["summary"]["from_cache"]["objects"] == len(objects)
    fs.get(f"{BUCKETS['moto']}/{prefix}/c", str(tmp_path / "third") + "/", recursive=True)
    for key, body in objects.items():
        assert (tmp_path / "third" / "c" / key.rsplit("/", 1)[1]).read_bytes() == body
