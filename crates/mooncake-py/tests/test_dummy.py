"""Dummy mode (``setup_dummy``) against a real ``mooncake_client`` process, and the
calls that came with it: the real client's flags, zero-copy puts and gets on
``MooncakeHostMemAllocator`` pools, every other call forwarded, -900 at once while
the real client is gone and recovery when it returns, and bad input."""

import ctypes
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import binary, free_port, port_open, wait_until
from bufs import HostBuf, pattern

from mooncake.store import MooncakeDistributedStore, MooncakeHostMemAllocator, ReplicateConfig

RPC_FAIL = -900
INVALID_PARAMS = -600
OBJECT_NOT_FOUND = -704


class RealClient:
    """A ``mooncake_client`` process on a free port, restartable on the same port."""

    def __init__(self, cluster, workdir: Path, segment="64 MB", extra=()):
        self.cluster, self.workdir, self.segment = cluster, workdir, segment
        self.extra = list(extra)
        self.port = free_port()
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        log = self.workdir / f"real-client-{self.starts}.log"
        # Its segment file goes with the test's directory, not into /dev/shm for good
        # (a killed owner leaves its file for a restart to take back).
        shm = self.workdir / "shm"
        shm.mkdir(exist_ok=True)
        env = dict(os.environ, MOONCAKE_SHM_DIR=str(shm))
        self.proc = subprocess.Popen(
            [binary("mooncake_client"),
             f"--master_server_address={self.cluster.master}",
             "--host=127.0.0.1", f"--port={self.port}",
             f"--global_segment_size={self.segment}", "--protocol=tcp",
             f"--metadata_server={self.cluster.metadata}", *self.extra],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
        wait_until("mooncake_client", lambda: port_open(self.port), 30, self.proc, log)
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def real_client(cluster, tmp_path):
    rc = RealClient(cluster, tmp_path).start()
    yield rc
    rc.stop()


@pytest.fixture
def pool():
    alloc = MooncakeHostMemAllocator()
    size = 8 << 20
    base = alloc.alloc(size)
    yield base, size
    alloc.free(base)


@pytest.fixture
def dummy(real_client):
    d = MooncakeDistributedStore()
    assert d.setup_dummy(8 << 20, 0, real_client.address) == 0
    yield d
    d.close()


def fill(ptr, data: bytes):
    ctypes.memmove(ptr, data, len(data))


def test_pointer_calls_move_bytes_through_the_shared_pool(dummy, pool, store, keyspace):
    base, _ = pool
    n, size = 8, 64 << 10
    keys = [keyspace(f"d{i}") for i in range(n)]
    ptrs = [base + i * size for i in range(n)]
    for i, p in enumerate(ptrs):
        fill(p, pattern(i, size))
    assert dummy.batch_put_from(keys, ptrs, [size] * n) == [0] * n
    # An ordinary client sees exactly what the dummy wrote.
    assert all(store.get(k) == pattern(i, size) for i, k in enumerate(keys))
    ctypes.memset(base, 0, n * size)
    assert dummy.batch_get_into(keys, ptrs, [size] * n) == [size] * n
    assert all(ctypes.string_at(p, size) == pattern(i, size) for i, p in enumerate(ptrs))
    # Single-key forms and the scatter/gather forms.
    k = keyspace("single")
    assert dummy.put_from(k, ptrs[0], 1000) == 0
    ctypes.memset(ptrs[1], 0, 1000)
    assert dummy.get_into(k, ptrs[1], 4096) == 1000
    assert ctypes.string_at(ptrs[1], 1000) == pattern(0, 1000)
    m = keyspace("multi")
    assert dummy.batch_put_from_multi_buffers([m], [[ptrs[2], ptrs[3]]], [[100, 200]]) == [0]
    assert store.get(m) == pattern(2, 100) + pattern(3, 200)
    ctypes.memset(ptrs[4], 0, 300)
    assert dummy.batch_get_into_multi_buffers([m], [[ptrs[4], ptrs[4] + 100]], [[100, 200]]) == [300]
    assert ctypes.string_at(ptrs[4], 300) == pattern(2, 100) + pattern(3, 200)
    # Upserts replace.
    fill(ptrs[5], b"z" * 1000)
    assert dummy.upsert_from(k, ptrs[5], 1000) == 0
    assert store.get(k) == b"z" * 1000
    assert dummy.batch_upsert_from([k], [ptrs[6]], [10]) == [0]
    assert store.get_size(k) == 10


def test_ranged_reads_through_the_dummy(dummy, pool, store, keyspace):
    base, _ = pool
    k = keyspace("r")
    v = pattern(5, 10000)
    assert store.put(k, v) == 0
    res = dummy.get_into_ranges([base], [[k, keyspace("none")]],
                                [[[0, 100], [0]]], [[[9000, 50], [0]]], [[[100, 100], [1]]])
    assert res[0][0] == [100, 100] and res[0][1][0] < 0
    assert ctypes.string_at(base, 200) == v[9000:9100] + v[50:150]


def test_every_other_call_is_forwarded(dummy, store, keyspace):
    a, b = keyspace("a"), keyspace("b")
    assert dummy.put(a, b"alpha") == 0
    assert dummy.get(a) == b"alpha" and store.get(a) == b"alpha"
    assert dummy.is_exist(a) == 1 and dummy.is_exist(b) == 0
    assert dummy.batch_is_exist([a, b]) == [1, 0]
    assert dummy.get_size(a) == 5
    assert dummy.put_parts(b, b"be", b"ta") == 0 and dummy.get(b) == b"beta"
    assert dummy.upsert_parts(b, b"ga", b"mma") == 0 and store.get(b) == b"gamma"
    assert dummy.upsert(a, b"ALPHA") == 0 and dummy.get(a) == b"ALPHA"
    c, d = keyspace("c"), keyspace("d")
    assert dummy.put_batch([c, d], [b"c", b"d"]) == 0
    assert dummy.get_batch([c, d]) == [b"c", b"d"]
    assert dummy.upsert_batch([c, d], [b"C", b"D"]) == 0
    assert bytes(dummy.get_buffer(c)) == b"C"
    assert [bytes(h) for h in dummy.batch_get_buffer([c, d])] == [b"C", b"D"]
    assert dummy.get(keyspace("missing")) == b""
    descs = dummy.get_replica_desc(a)
    assert len(descs) == 1 and descs[0].get_memory_descriptor().buffer_descriptor.size == 5
    assert set(dummy.batch_get_replica_desc([a, b, keyspace("none")])) == {a, b}
    assert dummy.health_check() == 0
    # The dummy registers nothing of its own: its hostname is the real client's.
    assert dummy.get_hostname().startswith("127.0.0.1:")
    assert dummy.remove(a, force=True) == 0
    assert dummy.batch_remove([b, keyspace("none")], force=True)[0] == 0
    assert dummy.batch_remove([keyspace("none")])[0] == OBJECT_NOT_FOUND
    assert dummy.remove_by_regex("^" + keyspace("c"), force=True) == 1
    assert store.is_exist(c) == 0 and store.is_exist(d) == 1


def test_location_cache_stats_are_the_real_clients(dummy, keyspace):
    k = keyspace("cached")
    s0 = dummy.location_cache_stats()
    assert set(s0) == {"hits", "misses", "stale", "entries"}
    assert dummy.put(k, b"v" * 4096) == 0
    s1 = dummy.location_cache_stats()
    assert s1["entries"] == s0["entries"] + 1, "the real client's put remembers its location"
    for _ in range(3):
        assert dummy.get(k) == b"v" * 4096
    s2 = dummy.location_cache_stats()
    assert s2["hits"] + s2["misses"] + s2["stale"] >= s1["hits"] + s1["misses"] + s1["stale"] + 3


def test_a_dead_real_client_fails_at_once_and_recovers(make_cluster, tmp_path, pool, keyspace):
    # A private cluster: the killed client's segment stays mounted at the master until
    # its heartbeats run out, and puts placed on it meanwhile fail; on the shared
    # session cluster that would fail other tests' puts for those seconds.
    real_client = RealClient(make_cluster(stores=1), tmp_path).start()
    try:
        dead_client_case(real_client, pool, keyspace)
    finally:
        real_client.stop()


def dead_client_case(real_client, pool, keyspace):
    base, _ = pool
    d = MooncakeDistributedStore()
    assert d.setup_dummy(0, 0, real_client.address) == 0
    k = keyspace("before")
    fill(base, b"x" * 4096)
    assert d.batch_put_from([k], [base], [4096]) == [0]
    real_client.kill()
    t0 = time.monotonic()
    assert d.batch_put_from([keyspace("down")], [base], [4096]) == [RPC_FAIL]
    assert d.batch_get_into([k], [base], [4096]) == [RPC_FAIL]
    assert d.is_exist(k) == RPC_FAIL
    assert d.get(k) == b""
    assert d.put(keyspace("down2"), b"v") == RPC_FAIL
    assert d.health_check() == 2
    # "At once": well inside any call timeout (not a speed claim, a hang guard).
    assert time.monotonic() - t0 < 10
    real_client.start()  # same port, a new instance: the pool is handed over again
    k2 = keyspace("after")
    fill(base, b"y" * 4096)
    assert d.batch_put_from([k2], [base], [4096]) == [0]
    ctypes.memset(base, 0, 4096)
    assert d.batch_get_into([k2], [base], [4096]) == [4096]
    assert ctypes.string_at(base, 4096) == b"y" * 4096
    assert d.close() == 0
    assert d.close() == 0


def test_bad_input(real_client, pool, keyspace):
    base, size = pool
    # Nothing listening there.
    d = MooncakeDistributedStore()
    assert d.setup_dummy(0, 0, f"127.0.0.1:{free_port()}") == RPC_FAIL
    assert d.setup_dummy(0, 0, "no-port-here") == INVALID_PARAMS
    assert d.is_exist("k") == INVALID_PARAMS  # still not set up
    assert d.setup_dummy(0, 0, real_client.address) == 0
    # Already set up, either way.
    assert d.setup_dummy(0, 0, real_client.address) == INVALID_PARAMS
    # A pointer outside every shared pool fails alone; the others go through.
    outside = HostBuf(4096)
    good = keyspace("good")
    assert d.batch_put_from([keyspace("bad"), good], [outside.ptr, base], [4096, 4096]) == \
        [INVALID_PARAMS, 0]
    assert d.batch_get_into([good], [outside.ptr], [4096]) == [INVALID_PARAMS]
    # A range running past the pool's end is outside it too.
    assert d.put_from(keyspace("edge"), base + size - 10, 20) == INVALID_PARAMS
    assert d.register_buffer(outside.ptr, 4096) == INVALID_PARAMS
    assert d.register_buffer(base, 4096) == 0
    # Mismatched lengths, as for an embedded store.
    assert d.batch_put_from([good], [base, base], [1]) == [INVALID_PARAMS]
    # Sessions are an embedded store's.
    assert d.batch_put_session_start([keyspace("s")], [10]) == [INVALID_PARAMS]
    assert d.batch_get_session_start([good]) == [INVALID_PARAMS]
    d.close()


def test_allocator_frees_only_its_own_blocks():
    a = MooncakeHostMemAllocator()
    p = a.alloc(1 << 20)
    ctypes.memset(p, 1, 1 << 20)
    assert a.free(p) == 0
    assert a.free(p) == INVALID_PARAMS
    assert a.free(12345) == INVALID_PARAMS
    with pytest.raises(ValueError):
        a.alloc(0)


def test_real_client_rejects_bad_flags(cluster, tmp_path):
    for flags, word in [(["--global_segment_size=lots"], "--global_segment_size"),
                        (["--protocol=pigeon"], "protocol"),
                        (["--prot=tcp"], "--prot"),
                        ([f"--flagfile={tmp_path}/missing"], "missing")]:
        p = subprocess.run([binary("mooncake_client"), *flags], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 2, (flags, p.returncode, p.stderr)
        assert word in p.stderr, (flags, p.stderr)
    # A master that is not there: setup fails with a message, not a hang or a panic.
    p = subprocess.run([binary("mooncake_client"), f"--master_server_address=127.0.0.1:{free_port()}",
                        "--host=127.0.0.1", f"--port={free_port()}", "--global_segment_size=16mb",
                        f"--metadata_server={cluster.metadata}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "setup failed" in p.stderr and "panicked" not in p.stderr


def test_real_client_reads_a_flagfile(cluster, tmp_path):
    port = free_port()
    ff = tmp_path / "client.flags"
    ff.write_text(f"# test\n--master_server_address={cluster.master}\n--host=127.0.0.1\n"
                  f"--port={port}\n--global_segment_size=32 MB\n--metadata_server={cluster.metadata}\n")
    log = tmp_path / "ff.log"
    p = subprocess.Popen([binary("mooncake_client"), f"--flagfile={ff}"],
                         stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_until("mooncake_client (flagfile)", lambda: port_open(port), 30, p, log)
        d = MooncakeDistributedStore()
        assert d.setup_dummy(0, 0, f"127.0.0.1:{port}") == 0
        assert d.health_check() == 0
        d.close()
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0


def test_the_health_and_metrics_port(cluster, tmp_path, keyspace):
    import urllib.error
    import urllib.request
    http_port = free_port()
    rc = RealClient(cluster, tmp_path, segment="32 MB",
                    extra=["--enable_http_server=true", f"--http_port={http_port}"]).start()
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_until("the http port", lambda: port_open(http_port), 10, rc.proc, tmp_path / "real-client-1.log")
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            assert (r.status, r.read()) == (200, b"OK")
        d = MooncakeDistributedStore()
        assert d.setup_dummy(0, 0, rc.address) == 0
        k = keyspace("metered")
        assert d.put(k, b"m" * 5000) == 0 and d.get(k) == b"m" * 5000
        d.close()
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        lines = dict(l.rsplit(" ", 1) for l in text.splitlines() if l and not l.startswith("#"))
        assert lines["client_segment_bytes"] == str(32 << 20)
        assert lines["client_mounted"] == "1"
        assert int(lines["client_location_cache_entries"]) >= 1, "the dummy's put went through it"
        with urllib.request.urlopen(base + "/metrics/summary", timeout=5) as r:
            summary = r.read().decode()
        assert "mounted" in summary and "location cache" in summary
        try:
            urllib.request.urlopen(base + "/api/remove_all", timeout=5)
            raise AssertionError("the port serves nothing but health and metrics")
        except urllib.error.HTTPError as e:
            assert e.code == 404
    finally:
        rc.stop()
    # The port taken: exit 1 naming the flag, before the segment is offered.
    with socket_holding() as taken:
        p = subprocess.run([binary("mooncake_client"), f"--master_server_address={cluster.master}",
                            "--host=127.0.0.1", f"--port={free_port()}", "--global_segment_size=16mb",
                            f"--metadata_server={cluster.metadata}", "--enable_http_server",
                            f"--http_port={taken}"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "--http_port" in p.stderr and "panicked" not in p.stderr


def test_the_real_client_keeps_an_ssd_tier(make_cluster, tmp_path, monkeypatch):
    # The real client's 8 MiB segment is the whole pool; its SSD tier (the store's
    # variables) keeps what eviction takes out of DRAM, readable through the dummy.
    c = make_cluster(stores=0, master_args=("--enable_offload=true",))
    (tmp_path / "tier").mkdir()
    monkeypatch.setenv("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH", str(tmp_path / "tier"))
    monkeypatch.setenv("MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES", "256mb")
    http_port = free_port()
    rc = RealClient(c, tmp_path, segment="8 MB",
                    extra=["--enable_http_server", f"--http_port={http_port}"]).start()
    try:
        import urllib.request
        wait_until("the http port", lambda: port_open(http_port), 10, rc.proc, tmp_path / "real-client-1.log")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
        assert f"client_tier_capacity_bytes {256 << 20}" in metrics
        # The tier calls the master in on its own task; until the master knows it,
        # what eviction takes is not on disk (docs/tier.md).
        def master_knows_the_tier():
            text = urllib.request.urlopen(c.url("/metrics"), timeout=5).read().decode()
            return any(l.startswith("master_tier_capacity_bytes ") and float(l.split()[1]) > 0
                       for l in text.splitlines())
        wait_until("the master learning of the tier", master_knows_the_tier, 20, rc.proc,
                   tmp_path / "real-client-1.log")
        d = MooncakeDistributedStore()
        assert d.setup_dummy(0, 0, rc.address) == 0
        values = {f"rc-ssd-{i}": bytes([i]) * (1 << 20) for i in range(24)}  # 24 MiB into 8
        for k, v in values.items():
            for _ in range(50):  # a full pool while earlier objects are still being written
                code = d.put(k, v)
                if code != -200:
                    break
                time.sleep(0.1)
            assert code == 0, k
        deadline = time.time() + 30
        while True:
            got = {k: d.get(k) for k in values}
            if all(got[k] == v for k, v in values.items()) or time.time() > deadline:
                break
            time.sleep(0.5)
        assert [k for k, v in values.items() if got[k] != v] == []
        assert any(p.is_file() for p in (tmp_path / "tier").iterdir()), "the tier wrote nothing"
        d.close()
    finally:
        rc.stop()
    # A tier directory that is not there: exit 1 naming it, never a panic.
    monkeypatch.setenv("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH", str(tmp_path / "missing"))
    p = subprocess.run([binary("mooncake_client"), f"--master_server_address={c.master}",
                        "--host=127.0.0.1", f"--port={free_port()}", "--global_segment_size=8mb",
                        f"--metadata_server={c.metadata}"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "missing" in p.stderr and "panicked" not in p.stderr, p.stderr
    monkeypatch.delenv("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH")
    p = subprocess.run([binary("mooncake_client"), f"--master_server_address={c.master}",
                        "--host=127.0.0.1", f"--port={free_port()}", "--global_segment_size=8mb",
                        f"--metadata_server={c.metadata}", "--enable_offload"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "MOONCAKE_OFFLOAD_FILE_STORAGE_PATH" in p.stderr, p.stderr


def test_a_drained_real_client_hands_its_objects_to_a_store(make_cluster, tmp_path, keyspace):
    # A node's rolling update in standalone mode: the master drains the sidecar's
    # segment; the sidecar copies its objects to the store, then leaves (kill -9)
    # with nothing lost.
    import json
    import urllib.request
    c = make_cluster(stores=1)
    rc = RealClient(c, tmp_path, segment="32 MB").start()
    try:
        d = MooncakeDistributedStore()
        assert d.setup_dummy(0, 0, rc.address) == 0
        seg = d.get_hostname()
        cfg = ReplicateConfig()
        cfg.preferred_segment = seg
        values = {keyspace(f"drain{i}"): bytes([i]) * 100_000 for i in range(20)}
        for k, v in values.items():
            assert d.put(k, v, cfg) == 0
        body = json.dumps({"segments": [seg], "target_segments": []}).encode()
        req = urllib.request.Request(c.url("/api/v1/drain_jobs"), data=body, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            job = json.loads(r.read())["job_id"]
        deadline = time.time() + 60
        while True:
            with urllib.request.urlopen(c.url(f"/api/v1/drain_jobs/query?job_id={job}"), timeout=5) as r:
                q = json.loads(r.read())
            if q["status_name"] != "RUNNING" or time.time() > deadline:
                break
            time.sleep(0.2)
        assert q["status_name"] == "SUCCEEDED", q
        assert q["total_units"] >= len(values) and q["failed_units"] == 0, q
        d.close()
    finally:
        rc.kill()
    reader = c.new_store()
    try:
        assert {k: reader.get(k) for k in values} == values
    finally:
        reader.close()


class socket_holding:
    """A listening loopback socket on a free port, for `with`: its port is taken."""

    def __enter__(self):
        import socket
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen()
        return self.s.getsockname()[1]

    def __exit__(self, *exc):
        self.s.close()


def test_the_port_survives_strangers(real_client, pool, keyspace):
    import socket
    # Garbage, a lying length and a silent connection: each is dropped, the service
    # keeps serving.
    for payload in [b"GET / HTTP/1.1\r\n\r\n", (1 << 31).to_bytes(4, "little") + b"xx",
                    (50).to_bytes(4, "little") + b"\x01MCDUMMY1"]:
        with socket.create_connection(("127.0.0.1", real_client.port)) as s:
            s.sendall(payload)
            s.settimeout(10)
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
    base, _ = pool
    d = MooncakeDistributedStore()
    assert d.setup_dummy(0, 0, real_client.address) == 0
    fill(base, b"q" * 100)
    assert d.batch_put_from([keyspace("after-strangers")], [base], [100]) == [0]
    d.close()


def _hello_answered(sock) -> bool:
    """Says hello on a raw connection; whether the real client answered it."""
    import struct
    sock.settimeout(15)
    try:
        sock.sendall(_frame(b"\x01MCDUMMY1" + struct.pack("<IQ", 1, 42)))
        _read_frame(sock)
        return True
    except (EOFError, ConnectionResetError, BrokenPipeError):
        return False


def test_connections_over_the_cap_are_refused_and_silent_ones_time_out(cluster, tmp_path):
    """At the connection cap one more connection is closed unanswered; strangers that
    never say hello are closed after the handshake timeout, so a flood of them holds
    the port for that long at most."""
    import socket
    rc = RealClient(cluster, tmp_path, extra=["--max_dummy_connections=2"]).start()
    try:
        # The readiness probe's connection counts against the cap until the real
        # client's thread sees it closed, so a holder may be turned away at first.
        held = []
        deadline = time.monotonic() + 15
        while len(held) < 2 and time.monotonic() < deadline:
            s = socket.create_connection(("127.0.0.1", rc.port))
            if _hello_answered(s):
                held.append(s)
            else:
                s.close()
                time.sleep(0.1)
        assert len(held) == 2  # both admitted, and they stay
        with socket.create_connection(("127.0.0.1", rc.port)) as extra:
            assert not _hello_answered(extra)  # over the cap: closed, never answered
        for s in held:
            s.close()
        d = MooncakeDistributedStore()
        wait_until("a dummy to get in after the holders left",
                   lambda: d.setup_dummy(0, 0, rc.address) == 0, 15)
        d.close()
        # Silent connections (no hello) are closed by the handshake timeout.
        silent = socket.create_connection(("127.0.0.1", rc.port))
        silent.settimeout(30)
        try:
            assert silent.recv(1) == b""
        except ConnectionResetError:
            pass
        silent.close()
    finally:
        rc.stop()


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "little") + body


def _read_frame(s) -> bytes:
    def exact(n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b
    return exact(int.from_bytes(exact(4), "little"))


def test_the_real_client_maps_only_sealed_pools_of_the_size_claimed(real_client):
    """A pool whose file could shrink under the mapping (SIGBUS in the real client) or
    that is smaller than claimed is refused with -600 and a reason; the real client
    keeps serving."""
    import os
    import socket
    import struct
    token = 0x5EED

    def register(fd, length):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(f"\0mooncake_client_{real_client.port}.sock")
            s.sendall(_frame(b"\x01MCDUMMY1" + struct.pack("<IQ", 1, token)))
            _read_frame(s)  # hello answer
            socket.send_fds(s, [_frame(b"\x02" + struct.pack("<QQQ", token, 0x10000, length))], [fd])
            answer = _read_frame(s)
            code = struct.unpack("<i", answer[:4])[0]
            return code, answer[8:].decode()

    plain = os.memfd_create("not-sealed")
    os.ftruncate(plain, 1 << 20)
    code, why = register(plain, 1 << 20)
    assert code == INVALID_PARAMS and "sealed" in why, why
    os.close(plain)
    # A sealed memfd (as the allocator makes them) smaller than claimed.
    import fcntl
    sealed = os.memfd_create("sealed", os.MFD_ALLOW_SEALING)
    os.ftruncate(sealed, 4096)
    fcntl.fcntl(sealed, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    code, why = register(sealed, 1 << 20)
    assert code == INVALID_PARAMS and "4096" in why, why
    # The right size is taken.
    assert register(sealed, 4096)[0] == 0
    os.close(sealed)
    d = MooncakeDistributedStore()
    assert d.setup_dummy(0, 0, real_client.address) == 0 and d.health_check() == 0
    d.close()


def _pool_mappings(pid: int) -> int:
    """How many of the dummies' pools the process maps (memfds named mooncake_shm)."""
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for line in f if "memfd:mooncake_shm" in line)


def test_freed_and_closed_pools_are_unmapped_by_the_real_client(real_client, keyspace):
    alloc = MooncakeHostMemAllocator()
    a, b = alloc.alloc(1 << 20), alloc.alloc(1 << 20)
    d = MooncakeDistributedStore()
    assert d.setup_dummy(0, 0, real_client.address) == 0
    ka, kb = keyspace("a"), keyspace("b")
    fill(a, b"a" * 100)
    fill(b, b"b" * 100)
    assert d.batch_put_from([ka, kb], [a, b], [100, 100]) == [0, 0]
    pid = real_client.proc.pid
    assert _pool_mappings(pid) == 2
    assert alloc.free(a) == 0
    # The next pointer call tells the real client; only the live pool stays mapped.
    assert d.batch_get_into([kb], [b], [100]) == [100]
    assert _pool_mappings(pid) == 1
    d.close()  # goodbye: the rest goes
    wait_until("the real client to unmap a closed dummy's pools",
               lambda: _pool_mappings(pid) == 0, 10)
    alloc.free(b)


DUMMY_RANK = r"""
import ctypes, sys
from mooncake.store import MooncakeDistributedStore, MooncakeHostMemAllocator
addr, rank, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
page, n = 64 << 10, 16
base = MooncakeHostMemAllocator().alloc(n * page)
s = MooncakeDistributedStore()
assert s.setup_dummy(n * page, 0, addr) == 0
keys = [f"{prefix}-{rank}-{i}" for i in range(n)]
ptrs = [base + i * page for i in range(n)]
for i, p in enumerate(ptrs):
    ctypes.memset(p, rank * 16 + i, page)
for _ in range(5):
    assert s.batch_upsert_from(keys, ptrs, [page] * n) == [0] * n
    ctypes.memset(base, 0, n * page)
    assert s.batch_get_into(keys, ptrs, [page] * n) == [page] * n
    assert all(ctypes.string_at(p, page) == bytes([rank * 16 + i]) * page for i, p in enumerate(ptrs))
s.close()
print("rank ok")
"""


def test_ranks_share_one_real_client(real_client, store, keyspace):
    import sys
    prefix = keyspace("rank")
    ranks = [subprocess.Popen([sys.executable, "-c", DUMMY_RANK, real_client.address, str(r), prefix],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(4)]
    for p in ranks:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and "rank ok" in out, out
    # Every rank's objects are in the one pool, readable by anyone.
    for r in range(4):
        assert store.get(f"{prefix}-{r}-3") == bytes([r * 16 + 3]) * (64 << 10)
