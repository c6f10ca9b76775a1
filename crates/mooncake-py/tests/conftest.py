"""Fixtures: a real ``mooncake_master`` and real ``mooncake_store`` processes on free
loopback ports, started from ``$MOONCAKE_BIN_DIR`` (default ``<repo>/target/release``)
and torn down by PID.

- ``cluster`` (session): one master with the embedded HTTP metadata server and two
  stores of 256 MiB each; the first is started through
  ``python -m mooncake.mooncake_store_service`` (the seed's command line), the second
  runs the binary directly.
- ``make_cluster``: builds extra, private clusters (e.g. a tiny pool for the
  back-pressure tests); each is stopped when its test ends.
- ``store``: a pure client (``global_segment_size=0``) set up against ``cluster``.
- ``keyspace``: a key prefix unique to the test, so tests never see each other's keys.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts"))
from free_ports import free_port, free_ports  # noqa: E402
BIN_DIR = Path(os.environ.get("MOONCAKE_BIN_DIR", REPO / "target" / "release")).resolve()
# The master's lease in these tests: long enough that a remove right after a get is
# refused, short enough that tests waiting for it to run out stay quick.
LEASE_MS = 1500


def binary(name: str) -> str:
    path = BIN_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} not found: build it (cargo build --release) or set MOONCAKE_BIN_DIR")
    return str(path)


def wait_until(what: str, check, timeout: float, proc=None, log: Optional[Path] = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up in {timeout}s\n{tail}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Cluster:
    master: str
    metadata: str
    metrics_port: int
    workdir: Path
    procs: List[subprocess.Popen] = field(default_factory=list)
    store_ports: List[int] = field(default_factory=list)
    # The stores' segment files (a store keeps its file when it stops, for its next
    # run; these stores have none, so stop() removes them with the directory).
    shm_dir: Optional[Path] = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def new_store(self, segment=0, local_buffer="64mb", hostname="127.0.0.1"):
        from mooncake.store import MooncakeDistributedStore

        s = MooncakeDistributedStore()
        rc = s.setup(hostname, self.metadata, segment, local_buffer, "tcp", "", self.master)
        assert rc == 0, f"setup returned {rc}"
        return s

    def stop(self):
        # Stores first (they unmount on SIGTERM), the master last.
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        if self.shm_dir is not None:
            shutil.rmtree(self.shm_dir, ignore_errors=True)


def start_cluster(workdir: Path, stores: int = 2, segment: str = "256mb",
                  master_args=(), via_service_first: bool = True) -> Cluster:
    workdir.mkdir(parents=True, exist_ok=True)
    rpc, metrics, meta = free_ports(3)
    log = workdir / "master.log"
    args = [
        binary("mooncake_master"),
        "--rpc_address", "127.0.0.1", "--rpc_port", str(rpc),
        "--metrics_host", "127.0.0.1", "--metrics_port", str(metrics),
        "--enable_http_metadata_server",
        "--http_metadata_server_host", "127.0.0.1",
        "--http_metadata_server_port", str(meta),
        "--default_kv_lease_ttl", str(LEASE_MS),
        *master_args,
    ]
    c = Cluster(
        master=f"127.0.0.1:{rpc}",
        metadata=f"http://127.0.0.1:{meta}/metadata",
        metrics_port=metrics,
        workdir=workdir,
        shm_dir=Path(tempfile.mkdtemp(prefix="mc-pytest-",
                                      dir="/dev/shm" if os.path.isdir("/dev/shm") else None)),
    )
    try:
        master = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
        c.procs.append(master)
        wait_until("mooncake_master", lambda: port_open(rpc) and port_open(meta), 20, master, log)
        for i in range(stores):
            port = free_port()
            ready = workdir / f"store{i}.ready"
            slog = workdir / f"store{i}.log"
            env = dict(os.environ)
            env.update(
                MOONCAKE_MASTER=c.master,
                MOONCAKE_TE_META_DATA_SERVER=c.metadata,
                MOONCAKE_GLOBAL_SEGMENT_SIZE=segment,
                MOONCAKE_LOCAL_BUFFER_SIZE="0",
                MOONCAKE_PROTOCOL="tcp",
                MOONCAKE_LOCAL_HOSTNAME="127.0.0.1",
                MOONCAKE_READY_FILE=str(ready),
                MOONCAKE_BIN_DIR=str(BIN_DIR),
                MOONCAKE_SHM_DIR=str(c.shm_dir),
            )
            if i == 0 and via_service_first:
                cmd = [sys.executable, "-m", "mooncake.mooncake_store_service",
                       "--port", str(port), "--http_host", "127.0.0.1"]
            else:
                cmd = [binary("mooncake_store"), "--port", str(port), "--http_host", "127.0.0.1"]
            p = subprocess.Popen(cmd, env=env, stdout=slog.open("w"), stderr=subprocess.STDOUT)
            c.procs.append(p)
            c.store_ports.append(port)
            wait_until(f"store {i}", lambda: ready.exists() and http_ok(
                f"http://127.0.0.1:{port}/health"), 30, p, slog)
    except BaseException:
        c.stop()
        raise
    return c


# Where the session cluster writes its logs. They stay after the run (a fresh directory
# each time) so that a failure can be read against what the master and stores said;
# ``MOONCAKE_PYTEST_LOGS`` moves them.
SESSION_LOGS = Path(os.environ.get("MOONCAKE_PYTEST_LOGS", REPO / "target" / "pytest-cluster"))


@pytest.fixture(scope="session")
def cluster():
    shutil.rmtree(SESSION_LOGS, ignore_errors=True)
    c = start_cluster(SESSION_LOGS)
    yield c
    c.stop()


@pytest.fixture
def make_cluster(tmp_path):
    made = []

    def make(**kw):
        c = start_cluster(tmp_path / f"cluster{len(made)}", **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def store(cluster):
    s = cluster.new_store()
    yield s
    s.close()


@pytest.fixture
def keyspace():
    tag = uuid.uuid4().hex[:12]
    return lambda name="": f"t{tag}_{name}"


def read_json(url: str):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read().decode() or "null")
