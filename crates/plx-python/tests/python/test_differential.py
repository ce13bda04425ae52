"""Ours against Polyaxon 2.18's own ``polyaxon.fs.get_fs_from_name`` (s3fs): the same catalog,
the same mounted secret, the same bucket on moto; every operation must give the same answer, or
the same exception type. Where they differ on purpose, the difference is in
``conformance/DIVERGENCES.md`` ("The Python package") and asserted here as it is written there.

s3s-fs answers a HEAD on a prefix with a 500 and lists directories as keys ending in ``/``, so
s3fs itself fails there; on it, ours must give what it gives on moto."""

import os

import pytest

import plx_connections
from conftest import BUCKETS, seed

#: Keys with spaces, unicode, deep prefixes, an empty object, files beside directories.
OBJECTS = {
    "plain.txt": b"plain\n",
    "empty.bin": b"",
    "with space/file name.txt": b"spaced out\n",
    "unicod\u00e9/\u00f1and\u00fa \u6587\u4ef6.bin": bytes(range(256)) * 3,
    "deep/a/b/c/d/e.txt": b"deep\n",
    "deep/a/b/f.txt": b"f" * 10_000,
    "deep/a/g.txt": b"g\n",
    "dir/x.csv": b"a,b\n1,2\n",
    "dir/sub/y.csv": b"c,d\n3,4\n",
    "dir-sibling.txt": b"sibling\n",
}
SEEDED = {}


def seeded(server):
    """The objects under a prefix of the server's bucket, put once per session."""
    if server not in SEEDED:
        prefix = f"diff-{os.getpid()}"
        seed(server, {f"{prefix}/{key}": body for key, body in OBJECTS.items()})
        SEEDED[server] = f"{BUCKETS[server]}/{prefix}"
    return SEEDED[server]


@pytest.fixture
def both():
    from polyaxon.fs import get_fs_from_name as polyaxons

    return polyaxons("moto-data"), plx_connections.get_fs_from_name("moto-data"), seeded("moto")


@pytest.fixture
def servers(prefix):
    """Ours on moto and on s3s-fs, each with the objects under a fresh prefix, and its root."""
    for server in ("moto", "s3s"):
        seed(server, {f"{prefix}/{key}": body for key, body in OBJECTS.items()})
    return (
        (plx_connections.get_fs_from_name("moto-data"), f"{BUCKETS['moto']}/{prefix}"),
        (plx_connections.get_fs_from_name("s3s-data"), f"{BUCKETS['s3s']}/{prefix}"),
    )


def outcome(call):
    try:
        return ("ok", call())
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return ("raised", type(error).__name__)


def shown(value, root="", etags=True):
    """A result as compared: infos cut to the keys Polyaxon's helpers read and what identifies
    the bytes (an ETag where the listing gave one, unless not ``etags``), lists sorted, ``root``
    taken off names."""
    if isinstance(value, str):
        return value.replace(root, "<root>") if root else value
    if isinstance(value, dict) and "type" in value:
        kept = {key: shown(value[key], root) for key in ("name", "type", "size") if key in value}
        if value.get("ETag") and etags:
            kept["ETag"] = value["ETag"]
        return kept
    if isinstance(value, dict):
        return {shown(key, root): shown(item, root, etags) for key, item in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return sorted((shown(item, root, etags) for item in value), key=repr)
    return value


def agree(expected, got):
    """``got`` is ``expected``, but may carry an ETag where the listing behind ``expected`` had
    none (s3fs lists a file it was asked for from its parent's listing; ours asks the object)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if "ETag" in got and "ETag" not in expected:
            got = {key: value for key, value in got.items() if key != "ETag"}
        return set(expected) == set(got) and all(agree(expected[k], got[k]) for k in expected)
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(expected) == len(got) and all(agree(e, g) for e, g in zip(expected, got))
    return expected == got


def same(theirs, ours, call):
    expected, got = outcome(lambda: shown(call(theirs))), outcome(lambda: shown(call(ours)))
    assert agree(expected, got), (expected, got)
    return got


PATHS = [
    "",
    "/plain.txt",
    "/empty.bin",
    "/dir",
    "/dir/",
    "/dir/sub",
    "/deep/a",
    "/with space",
    "/with space/file name.txt",
    "/unicod\u00e9",
    "/missing",
    "/missing/key.txt",
    "/dir-sibling.txt",
]

LISTINGS = (
    lambda fs, path: fs.ls(path, detail=True),
    lambda fs, path: fs.ls(path, detail=False),
    lambda fs, path: fs.info(path),
    lambda fs, path: fs.exists(path),
    lambda fs, path: fs.isdir(path),
    lambda fs, path: fs.isfile(path),
)

FINDS = (
    lambda fs, path: fs.find(path),
    lambda fs, path: fs.find(path, withdirs=True),
    lambda fs, path: fs.find(path, detail=True),
    lambda fs, path: fs.find(path, maxdepth=1),
    lambda fs, path: fs.glob(path + "/*"),
    lambda fs, path: fs.glob(path + "/**"),
    lambda fs, path: fs.glob(path + "/*.csv"),
    lambda fs, path: fs.glob(path + "/**/*.txt"),
)


@pytest.mark.parametrize("path", PATHS)
def test_ls_info_exists_isdir_isfile(both, path):
    theirs, ours, root = both
    for call in LISTINGS:
        theirs.invalidate_cache()
        same(theirs, ours, lambda fs: call(fs, root + path))


@pytest.mark.parametrize("path", ["", "/dir", "/deep", "/plain.txt", "/missing"])
def test_find_and_glob(both, path):
    theirs, ours, root = both
    for call in FINDS:
        theirs.invalidate_cache()
        same(theirs, ours, lambda fs: call(fs, root + path))


#: fsspec's (start, end) forms, and what each reads of a body, as Python slices it.
SPANS = [
    ((None, None), lambda body: body),
    ((1, 5), lambda body: body[1:5]),
    ((3, None), lambda body: body[3:]),
    ((-4, None), lambda body: body[-4:]),
    ((2, -1), lambda body: body[2:-1]),
    ((10**9, None), lambda body: b""),
]


@pytest.mark.parametrize("key", list(OBJECTS) + ["missing.txt", "dir"])
def test_cat(both, key):
    theirs, ours, root = both
    path = f"{root}/{key}"
    for (start, end), sliced in SPANS:
        got = outcome(lambda: ours.cat_file(path, start=start, end=end))
        expected = outcome(lambda: theirs.cat_file(path, start=start, end=end))
        if key not in OBJECTS:
            assert got == expected == ("raised", "FileNotFoundError")
            continue
        assert got == ("ok", sliced(OBJECTS[key]))
        # DIVERGENCES.md: a span the object cannot satisfy reads as a file does; s3fs passes
        # the store's 416 on as OSError.
        assert expected in (got, ("raised", "OSError")), (start, end, expected)
    same(theirs, ours, lambda fs: fs.cat(path))


def test_cat_of_many_paths_and_ranges(both):
    theirs, ours, root = both
    paths = [f"{root}/{key}" for key in OBJECTS]
    same(theirs, ours, lambda fs: fs.cat(paths))
    same(theirs, ours, lambda fs: fs.cat(root + "/dir", recursive=True))
    same(theirs, ours, lambda fs: fs.cat([root + "/plain.txt", root + "/missing"], on_error="omit"))
    same(theirs, ours, lambda fs: fs.cat([root + "/plain.txt", root + "/missing"]))
    nonempty = [f"{root}/{key}" for key, body in OBJECTS.items() if len(body) >= 3]
    starts = [0, 1, 2] * 3
    ends = [3, 4, 100] * 3
    same(theirs, ours, lambda fs: fs.cat_ranges(nonempty[:9], starts, ends))


def test_open_read_seek(both):
    theirs, ours, root = both
    path = f"{root}/unicod\u00e9/\u00f1and\u00fa \u6587\u4ef6.bin"

    def read(fs):
        with fs.open(path, "rb", block_size=100) as file:
            first = file.read(10)
            file.seek(500)
            middle = file.read(50)
            file.seek(-7, 2)
            last = file.read()
            return first, middle, last, file.tell(), file.size

    assert same(theirs, ours, read)[0] == "ok"
    same(theirs, ours, lambda fs: fs.open(f"{root}/missing", "rb"))


def tree(directory):
    found = {}
    for parent, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, directory)] = file.read()
    return found


GETS = [("/dir", True), ("/deep/", True), ("/plain.txt", False), ("/dir/*.csv", False), ("", True)]


@pytest.mark.parametrize("source,recursive", GETS)
def test_get(both, tmp_path, source, recursive):
    theirs, ours, root = both
    for name, fs in (("theirs", theirs), ("ours", ours)):
        target = tmp_path / name
        target.mkdir()
        fs.get(root + source, str(target) + "/", recursive=recursive)
    assert tree(tmp_path / "ours") == tree(tmp_path / "theirs")
    assert tree(tmp_path / "ours")


def test_get_of_a_missing_key_raises(both, tmp_path):
    theirs, ours, root = both
    same(theirs, ours, lambda fs: fs.get(root + "/missing.txt", str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()


def test_put(both, tmp_path):
    theirs, ours, root = both
    source = tmp_path / "source"
    (source / "sub dir").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"a" * 1000)
    (source / "sub dir" / "\u00e9.bin").write_bytes(os.urandom(70_000))
    puts = {}
    for name, fs in (("theirs", theirs), ("ours", ours)):
        target = f"{root}/put-{name}"
        fs.put(str(source), target, recursive=True)
        theirs.invalidate_cache()
        puts[name] = {path[len(target) :]: theirs.cat(path) for path in theirs.find(target)}
    assert puts["ours"] == puts["theirs"]
    assert len(puts["ours"]) == 2


def test_pipe_write_copy_remove(both):
    theirs, ours, root = both
    ours.pipe(f"{root}/written/piped.bin", b"piped")
    with ours.open(f"{root}/written/opened.bin", "wb") as file:
        file.write(b"x" * 100)
        file.write(b"y" * 100)
        # Nothing is visible before the file is closed.
        assert not theirs.exists(f"{root}/written/opened.bin")
    # A write that raises leaves nothing behind.
    with pytest.raises(ZeroDivisionError):
        with ours.open(f"{root}/written/broken.bin", "wb") as file:
            file.write(b"half")
            1 / 0
    assert not theirs.exists(f"{root}/written/broken.bin")
    # DIVERGENCES.md: s3fs sends what was written before the error.
    with pytest.raises(ZeroDivisionError):
        with theirs.open(f"{root}/written/theirs-broken.bin", "wb") as file:
            file.write(b"half")
            1 / 0
    theirs.invalidate_cache()
    assert theirs.cat(f"{root}/written/theirs-broken.bin") == b"half"
    ours.copy(f"{root}/written/piped.bin", f"{root}/written/copied.bin")
    theirs.invalidate_cache()
    assert theirs.cat(f"{root}/written/piped.bin") == b"piped"
    assert theirs.cat(f"{root}/written/copied.bin") == b"piped"
    assert theirs.cat(f"{root}/written/opened.bin") == b"x" * 100 + b"y" * 100
    ours.rm(f"{root}/written", recursive=True)
    theirs.invalidate_cache()
    assert not theirs.exists(f"{root}/written/piped.bin")
    assert theirs.find(f"{root}/written") == []


def test_s3s_fs_answers_as_moto_does(servers, tmp_path):
    (moto, moto_root), (s3s, s3s_root) = servers

    def on_both(call, path):
        # s3s-fs's listings carry no ETags.
        results = [
            outcome(lambda: shown(call(fs, root + path), root, etags=False)) for fs, root in servers
        ]
        assert agree(results[0], results[1]), (path, results)

    for path in PATHS:
        for call in LISTINGS:
            on_both(call, path)
    for path in ["", "/dir", "/deep", "/plain.txt", "/missing"]:
        for call in FINDS:
            on_both(call, path)
    # s3s-fs answers a range of an empty object, and a suffix longer than the object, with a
    # 500, not a 416 or the whole object.
    for key in [key for key, body in OBJECTS.items() if len(body) >= 4] + ["missing.txt"]:
        for (start, end), _ in SPANS:
            on_both(lambda fs, path: fs.cat_file(path, start=start, end=end), f"/{key}")
    for index, (source, recursive) in enumerate(GETS):
        for name, (fs, root) in zip(("moto", "s3s"), servers):
            target = tmp_path / f"{index}-{name}"
            target.mkdir()
            fs.get(root + source, str(target) + "/", recursive=recursive)
        assert tree(tmp_path / f"{index}-s3s") == tree(tmp_path / f"{index}-moto")


def test_the_other_divergences_as_written(monkeypatch):
    from polyaxon.fs import get_fs_from_name as polyaxons

    # An unknown name: Polyaxon hands back a local filesystem; ours names the known ones.
    assert type(polyaxons("no-such-connection")).__name__ == "LocalFileSystem"
    with pytest.raises(plx_connections.PlxError, match="moto-data"):
        plx_connections.get_fs_from_name("no-such-connection")
    # gcs and wasb are Polyaxon's to read.
    with pytest.raises(plx_connections.PlxError, match="polyaxon.fs"):
        plx_connections.get_sync_fs_from_connection(
            {"name": "gcs-data", "kind": "gcs", "schema": {"bucket": "gs://some-bucket"}}
        )
    # The bucket's root: the connection's bucket, not every bucket the keys can list.
    assert plx_connections.get_fs_from_name("moto-data").ls("", detail=False) == [BUCKETS["moto"]]
    assert BUCKETS["moto"] in polyaxons("moto-data").ls("", detail=False)
    # A directory on s3s-fs, which answers a HEAD on a prefix with 500.
    root = seeded("s3s")
    assert outcome(lambda: polyaxons("s3s-data").info(root + "/dir")) == ("raised", "OSError")
    assert plx_connections.get_fs_from_name("s3s-data").info(root + "/dir")["type"] == "directory"
    # The artifacts store's connection: a dict (Polyaxon's is a V1Connection), which ours takes
    # back; ours takes Polyaxon's too.
    monkeypatch.setenv("POLYAXON_ARTIFACTS_STORE_NAME", "moto-data")
    store = plx_connections.get_artifacts_connection()
    assert isinstance(store, dict) and store["name"] == "moto-data"
    assert isinstance(plx_connections.get_sync_fs_from_connection(store), plx_connections.S3FileSystem)
    from polyaxon._fs.fs import get_artifacts_connection as polyaxons_store

    theirs = polyaxons_store()
    assert hasattr(theirs, "to_dict") and not isinstance(theirs, dict)
    assert plx_connections.get_sync_fs_from_connection(theirs).store.bucket == BUCKETS["moto"]
