"""The contract's object semantics through the Python API (CONTRACT §3-§5)."""

import time

from bufs import HostBuf, pattern
from conftest import LEASE_MS
from mooncake.store import ReplicateConfig

INVALID_PARAMS = -600
OBJECT_NOT_FOUND = -704
OBJECT_HAS_LEASE = -706


def test_put_is_put_if_absent_and_upsert_replaces(store, keyspace):
    k = keyspace("k")
    assert store.put(k, b"first") == 0
    assert store.put(k, b"second value") == 0
    assert store.get(k) == b"first"
    assert store.upsert(k, b"third, longer value") == 0
    assert store.get(k) == b"third, longer value"
    assert store.get_size(k) == len(b"third, longer value")


def test_missing_keys(store, keyspace):
    k = keyspace("missing")
    assert store.get(k) == b""
    assert store.is_exist(k) == 0
    assert store.get_size(k) == OBJECT_NOT_FOUND
    assert store.get_buffer(k) is None
    buf = HostBuf(64)
    assert store.get_into(k, buf.ptr, 64) < 0
    assert store.batch_is_exist([k, k]) == [0, 0]
    assert store.remove(k) == OBJECT_NOT_FOUND


def test_batch_is_exist_answers_in_key_order(store, keyspace):
    """Bad keys answer -600 in their own position; the others are still asked."""
    there, absent = keyspace("there"), keyspace("absent")
    assert store.put(there, b"v") == 0
    too_long = "k" * 5000
    keys = [there, "", absent, too_long, there, "ключ/" + absent]
    assert store.batch_is_exist(keys) == [1, INVALID_PARAMS, 0, INVALID_PARAMS, 1, 0]
    assert store.batch_is_exist(tuple(keys[:3])) == [1, INVALID_PARAMS, 0]
    assert store.batch_is_exist([]) == []
    many = [keyspace(f"many/{i}") for i in range(3000)] + [there]
    assert store.batch_is_exist(many) == [0] * 3000 + [1]
    for bad in (there, [there, 7], [b"bytes-key"], None):
        try:
            store.batch_is_exist(bad)
        except TypeError:
            pass
        else:
            raise AssertionError(f"batch_is_exist({bad!r}) did not raise TypeError")


def test_lease_blocks_remove_until_forced_or_expired(store, keyspace):
    a, b = keyspace("a"), keyspace("b")
    assert store.put(a, b"x") == 0 and store.put(b, b"y") == 0
    assert store.get(a) == b"x"  # grants a lease
    assert store.remove(a) == OBJECT_HAS_LEASE
    assert store.remove(a, True) == 0
    assert store.is_exist(a) == 0
    assert store.is_exist(b) == 1  # so does an exist check
    assert store.remove(b) == OBJECT_HAS_LEASE
    time.sleep(LEASE_MS / 1000 + 0.3)
    assert store.remove(b) == 0


def test_close_drops_the_clients_objects(cluster, store, keyspace):
    owner = cluster.new_store(segment=32 << 20)
    cfg = ReplicateConfig()
    cfg.preferred_segment = owner.get_hostname()
    k = keyspace("owned")
    assert owner.put(k, pattern(2, 4096), cfg) == 0
    assert store.get(k) == pattern(2, 4096)
    assert owner.close() == 0
    assert owner.close() == 0  # idempotent
    assert store.is_exist(k) == 0
    assert store.get(k) == b""
    assert owner.health_check() == 1


def test_remove_all_and_remove_by_regex(make_cluster):
    c = make_cluster(stores=1, segment="64mb", via_service_first=False)
    s = c.new_store()
    try:
        for i in range(5):
            assert s.put(f"alpha/{i}", b"a") == 0
        for i in range(3):
            assert s.put(f"beta/{i}", b"b") == 0
        assert s.remove_by_regex("^beta/", True) == 3
        assert s.remove_by_regex("(unclosed", True) == INVALID_PARAMS
        assert s.batch_is_exist(["beta/0", "alpha/0"]) == [0, 1]
        assert s.remove_all(True) == 5
        assert s.remove_all(True) == 0
        assert s.is_exist("alpha/1") == 0
    finally:
        s.close()


def test_health_check_codes(make_cluster):
    from mooncake.store import MooncakeDistributedStore

    assert MooncakeDistributedStore().health_check() == 1
    c = make_cluster(stores=1, segment="32mb", via_service_first=False)
    s = c.new_store()
    assert s.health_check() == 0
    assert s.put("k", b"v") == 0
    c.stop()  # master and store gone
    t0 = time.monotonic()
    assert s.health_check() == 2
    # Master unreachable: calls fail fast with codes, nothing raises.
    assert s.get("k") == b""
    assert s.is_exist("k") < 0
    assert s.put("k2", b"v") < 0
    assert s.batch_is_exist(["a", "b"])[0] < 0
    assert time.monotonic() - t0 < 10
    s.close()
    assert s.health_check() == 1


def test_bad_arguments_are_invalid_params(store, keyspace):
    buf = HostBuf(4096)
    assert store.register_buffer(buf.ptr, buf.size) == 0
    k = keyspace("k")
    # mismatched list lengths: every entry is -600
    assert store.batch_put_from([k, k + "2"], [buf.ptr], [16, 16]) == [INVALID_PARAMS] * 2
    assert store.batch_get_into([k], [buf.ptr, buf.ptr], [16]) == [INVALID_PARAMS]
    assert store.batch_upsert_from([k], [], []) == [INVALID_PARAMS]
    # a buffer too small for the object
    assert store.put(k, b"z" * 100) == 0
    assert store.get_into(k, buf.ptr, 10) == INVALID_PARAMS
    assert store.get_into(k, buf.ptr, 4096) == 100
    # unknown pointers and nonsense registrations
    assert store.unregister_buffer(buf.ptr + 8) == INVALID_PARAMS
    assert store.register_buffer(0, 4096) == INVALID_PARAMS
    assert store.register_buffer(buf.ptr, 0) == INVALID_PARAMS
    # a TTL without ENABLE, and zero replicas
    cfg = ReplicateConfig()
    cfg.soft_pin_ttl_ms = 1000
    assert store.put(keyspace("ttl"), b"v", cfg) == INVALID_PARAMS
    cfg = ReplicateConfig()
    cfg.replica_num = 0
    assert store.put(keyspace("zero"), b"v", cfg) == INVALID_PARAMS
    assert store.unregister_buffer(buf.ptr) == 0


def test_not_set_up_never_raises():
    from mooncake.store import MooncakeDistributedStore

    s = MooncakeDistributedStore()
    assert s.get("k") == b""
    assert s.put("k", b"v") == INVALID_PARAMS
    assert s.is_exist("k") == INVALID_PARAMS
    assert s.batch_is_exist(["a", "b"]) == [INVALID_PARAMS] * 2
    assert s.get_buffer("k") is None
    assert s.batch_get_buffer(["a"]) == [None]
    assert s.get_batch(["a"]) == [b""]
    assert s.batch_get_into(["a"], [1], [1]) == [INVALID_PARAMS]
    assert s.get_into_ranges([1], [["a"]], [[[0]]], [[[0]]], [[[1]]]) == [[[INVALID_PARAMS]]]
    assert s.remove_all() == INVALID_PARAMS
    assert s.get_hostname() == ""
    assert s.close() == 0


def test_put_batch_get_batch_and_upserts_from_pointers(store, keyspace):
    keys = [keyspace(f"pb{i}") for i in range(4)]
    values = [pattern(i, 100 + i) for i in range(4)]
    assert store.put_batch(keys, values) == 0
    assert store.get_batch(keys + [keyspace("none")]) == values + [b""]
    assert store.put_batch(keys, values[:2]) == INVALID_PARAMS
    buf = HostBuf(1024)
    assert store.register_buffer(buf.ptr, buf.size) == 0
    buf.write(0, b"N" * 512)
    assert store.upsert_from(keys[0], buf.ptr, 200) == 0
    assert store.get(keys[0]) == b"N" * 200
    assert store.batch_upsert_from(keys[1:3], [buf.ptr, buf.ptr + 100], [50, 60]) == [0, 0]
    assert store.get_batch(keys[1:3]) == [b"N" * 50, b"N" * 60]
    assert store.unregister_buffer(buf.ptr) == 0


def test_get_into_ranges(store, keyspace):
    a, b = keyspace("ra"), keyspace("rb")
    va, vb = pattern(1, 10000), pattern(2, 5000)
    assert store.put(a, va) == 0 and store.put(b, vb) == 0
    d0, d1 = HostBuf(4096), HostBuf(4096)
    for d in (d0, d1):
        assert store.register_buffer(d.ptr, d.size) == 0
    res = store.get_into_ranges(
        [d0.ptr, d1.ptr],
        [[a, b], [a]],
        [[[0, 100], [200]], [[0]]],        # dst offsets
        [[[9000, 50], [4990]], [[1]]],     # src offsets
        [[[100, 100], [10]], [[300]]],     # sizes
    )
    assert res == [[[100, 100], [10]], [[300]]]
    assert d0.read(0, 100) == va[9000:9100]
    assert d0.read(100, 100) == va[50:150]
    assert d0.read(200, 10) == vb[4990:5000]
    assert d1.read(0, 300) == va[1:301]
    # inconsistent fragment lists (one code: no fragment count to mirror) and
    # missing keys fail alone
    res = store.get_into_ranges([d0.ptr], [[a, keyspace("none")]],
                                [[[0, 1], [0]]], [[[0], [0]]], [[[1, 1], [1]]])
    assert res[0][0] == [INVALID_PARAMS]
    assert len(res[0][1]) == 1 and res[0][1][0] < 0
    for d in (d0, d1):
        assert store.unregister_buffer(d.ptr) == 0


def test_replicas_on_distinct_stores(store, cluster, keyspace):
    import json
    import urllib.request

    cfg = ReplicateConfig()
    cfg.replica_num = 2
    k = keyspace("two")
    assert store.put(k, pattern(9, 8192), cfg) == 0
    with urllib.request.urlopen(cluster.url(f"/query_key?key={k}"), timeout=2) as r:
        info = json.loads(r.read())
    segs = [rep["segment"] for rep in info["replicas"]]
    assert len(segs) == 2 and len(set(segs)) == 2


def test_soft_pin_enable_with_ttl(store, cluster, keyspace):
    import json
    import urllib.request

    from mooncake.store import SoftPinAction

    cfg = ReplicateConfig()
    cfg.soft_pin_action = SoftPinAction.ENABLE
    cfg.soft_pin_ttl_ms = 60_000
    k = keyspace("soft")
    assert store.put(k, b"pinned", cfg) == 0
    with urllib.request.urlopen(cluster.url(f"/query_key?key={k}"), timeout=2) as r:
        assert json.loads(r.read())["soft_pinned"] is True


def test_close_while_other_threads_call(cluster, keyspace):
    """Closing under load: in-flight and later calls answer with codes, nothing raises
    or crashes, and the store can be set up again."""
    import threading

    s = cluster.new_store()
    k = keyspace("busy")
    assert s.put(k, b"v" * 4096) == 0
    seen, errors = [], []
    stop = threading.Event()

    def hammer():
        try:
            while not stop.is_set():
                seen.append((s.get(k), s.is_exist(k)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert s.close() == 0
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert (b"v" * 4096, 1) in seen
    assert all(v in (b"", b"v" * 4096) for v, _ in seen)
    assert all(e == 1 or e < 0 for _, e in seen)
    assert seen[-1] == (b"", INVALID_PARAMS)
    assert s.setup("127.0.0.1", cluster.metadata, 0, 16 << 20, "tcp", "", cluster.master) == 0
    assert s.get(k) == b"v" * 4096
    s.close()


def test_get_returns_exact_bytes_of_every_size(store, keyspace):
    """get() reads into a new bytes object sized by the lookup: small values, values
    past glibc's mmap threshold (32 MiB), and several threads at once."""
    import os
    import threading

    values = {keyspace(f"size/{n}"): os.urandom(n) for n in (1, 4096, 5 << 20, 40 << 20)}
    for k, v in values.items():
        assert store.put(k, v) == 0
    for k, v in values.items():
        got = store.get(k)
        assert type(got) is bytes and len(got) == len(v) and got == v, k
    errors = []

    def reader(k, v):
        for _ in range(3):
            if store.get(k) != v:
                errors.append(k)

    threads = [threading.Thread(target=reader, args=kv) for kv in values.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for k in values:
        assert store.remove(k, force=True) == 0
