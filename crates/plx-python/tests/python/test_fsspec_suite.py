"""fsspec's own abstract tests for implementations (copy, get, put) on our filesystem, on moto."""

import uuid

import pytest
from fsspec.tests.abstract import AbstractFixtures
from fsspec.tests.abstract.copy import AbstractCopyTests
from fsspec.tests.abstract.get import AbstractGetTests
from fsspec.tests.abstract.put import AbstractPutTests

import plx_connections
from conftest import BUCKETS


class Fixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self):
        fs = plx_connections.get_fs_from_name("moto-data")
        fs.invalidate_cache()
        return fs

    @pytest.fixture
    def fs_join(self):
        return lambda *parts: "/".join(parts)

    @pytest.fixture
    def fs_path(self):
        return f"{BUCKETS['moto']}/suite-{uuid.uuid4().hex[:10]}"

    @pytest.fixture
    def supports_empty_directories(self):
        # S3 has none: a directory exists while a key is under it.
        return False


class TestGet(AbstractGetTests, Fixtures):
    pass


class TestPut(AbstractPutTests, Fixtures):
    pass


class TestCopy(AbstractCopyTests, Fixtures):
    pass
