"""Polyaxon 2.18's upload path: the connection's filesystem from `get_fs_from_name` (s3fs, set up
from the catalog as Polyaxon's sidecar does) and a recursive `put` of a local directory."""

import sys

from polyaxon.fs import get_fs_from_name


def main():
    source, target = sys.argv[1], sys.argv[2]
    fs = get_fs_from_name("bench")
    fs.put(source.rstrip("/") + "/", target.rstrip("/") + "/", recursive=True)


if __name__ == "__main__":
    main()
