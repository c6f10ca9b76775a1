"""Segment files of the roles started here go to a directory of their own.

Segment owners keep their files when they stop, so that a restarted owner takes its
memory back (lossless restarts). The roles here run on free ports, so every run has
new identities and nothing would ever take those files back: in /dev/shm they would
add 64 MB per store and client on every run.
"""

import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_segment_dir():
    d = tempfile.mkdtemp(prefix="mooncake-manifest-shm-", dir="/dev/shm")
    before = os.environ.get("MOONCAKE_SHM_DIR")
    os.environ["MOONCAKE_SHM_DIR"] = d
    yield d
    if before is None:
        del os.environ["MOONCAKE_SHM_DIR"]
    else:
        os.environ["MOONCAKE_SHM_DIR"] = before
    shutil.rmtree(d, ignore_errors=True)
