"""SGLang HiCache's usage (CONTRACT §3): warm-up, prefix lookup over a batch of 256
keys, zero-copy reads into and writes from a registered host pool, three threads."""

import sys
import threading
import time
import uuid

from bufs import HostBuf, pattern

PAGE = 64 * 1024


def test_warmup_put_exist_get(store):
    key = "sglang_mooncake_store_warmup_key" + uuid.uuid4().hex
    value = bytes(4 * 1024)
    assert store.put(key, value) == 0
    assert store.is_exist(key) == 1
    assert store.get(key) == value


def _write_through(store, pool, keys, first_slot):
    """SGLang's backup: batch_is_exist, then batch_put_from of the keys not yet there."""
    exists = store.batch_is_exist(keys)
    assert len(exists) == len(keys)
    missing = [i for i, e in enumerate(exists) if e != 1]
    ptrs = [pool.ptr + (first_slot + i) * PAGE for i in missing]
    results = store.batch_put_from([keys[i] for i in missing], ptrs, [PAGE] * len(missing))
    assert results == [0] * len(missing)
    return len(missing)


def _prefix_hit(store, keys):
    """SGLang's prefetch: the leading run of 1s is the usable prefix."""
    exists = store.batch_is_exist(keys)
    n = 0
    while n < len(exists) and exists[n] == 1:
        n += 1
    return n


def test_prefix_lookup_then_zero_copy_get_and_put(store, keyspace):
    pages = 256
    pool = HostBuf(2 * pages * PAGE)
    assert store.register_buffer(pool.ptr, pool.size) == 0
    try:
        keys = [keyspace(f"page{i}") for i in range(pages)]
        for i in range(pages):
            pool.write(i * PAGE, pattern(i, PAGE))
        # First request cached the first 100 pages.
        assert _write_through(store, pool, keys[:100], 0) == 100
        assert _prefix_hit(store, keys) == 100
        # Load the prefix into the second half of the pool.
        dst = pages * PAGE
        got = store.batch_get_into(keys[:100], [pool.ptr + dst + i * PAGE for i in range(100)],
                                   [PAGE] * 100)
        assert got == [PAGE] * 100
        for i in (0, 1, 57, 99):
            assert pool.read(dst + i * PAGE, PAGE) == pattern(i, PAGE)
        # A longer request writes through: only the 156 new pages are put.
        assert _write_through(store, pool, keys, 0) == 156
        assert _prefix_hit(store, keys) == pages
    finally:
        assert store.unregister_buffer(pool.ptr) == 0


def test_objects_of_a_few_mib(store, keyspace):
    sizes = [1 << 20, 3 << 20, 5 << 20]
    pool = HostBuf(2 * sum(sizes))
    assert store.register_buffer(pool.ptr, pool.size) == 0
    keys = [keyspace(f"big{i}") for i in range(len(sizes))]
    offs = [sum(sizes[:i]) for i in range(len(sizes))]
    for i, (o, n) in enumerate(zip(offs, sizes)):
        pool.write(o, pattern(i + 7, n))
    assert store.batch_put_from(keys, [pool.ptr + o for o in offs], sizes) == [0, 0, 0]
    base = sum(sizes)
    assert store.batch_get_into(keys, [pool.ptr + base + o for o in offs], sizes) == sizes
    for i, (o, n) in enumerate(zip(offs, sizes)):
        assert pool.read(base + o, n) == pattern(i + 7, n)
    assert store.unregister_buffer(pool.ptr) == 0


def test_three_threads_share_one_store(store, keyspace):
    per_thread = 48
    pools = [HostBuf(2 * per_thread * PAGE) for _ in range(3)]
    for p in pools:
        assert store.register_buffer(p.ptr, p.size) == 0
    errors = []

    def worker(t):
        try:
            pool = pools[t]
            keys = [keyspace(f"th{t}_{i}") for i in range(per_thread)]
            for i in range(per_thread):
                pool.write(i * PAGE, pattern(t * 1000 + i, PAGE))
            for _ in range(3):
                _write_through(store, pool, keys, 0)
                assert _prefix_hit(store, keys) == per_thread
                dst = per_thread * PAGE
                got = store.batch_get_into(
                    keys, [pool.ptr + dst + i * PAGE for i in range(per_thread)],
                    [PAGE] * per_thread)
                assert got == [PAGE] * per_thread
                for i in range(0, per_thread, 7):
                    assert pool.read(dst + i * PAGE, PAGE) == pattern(t * 1000 + i, PAGE)
        except BaseException as e:  # reported by the main thread
            errors.append((t, e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    for p in pools:
        assert store.unregister_buffer(p.ptr) == 0


def test_calls_release_the_gil(store, keyspace):
    """Another Python thread runs in the middle of large batch reads. With the switch
    interval at 0.1 ms, a call that held the GIL could only let the other thread in
    at its very edges, never in the middle half of a call of a millisecond or more."""
    n, size = 16, 2 << 20
    pool = HostBuf(n * size)
    assert store.register_buffer(pool.ptr, pool.size) == 0
    keys = [keyspace(f"gil{i}") for i in range(n)]
    ptrs = [pool.ptr + i * size for i in range(n)]
    assert store.batch_put_from(keys, ptrs, [size] * n) == [0] * n
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    th = threading.Thread(target=ticker)
    th.start()
    windows = []
    try:
        for _ in range(10):
            t0 = time.perf_counter()
            got = store.batch_get_into(keys, ptrs, [size] * n)
            windows.append((t0, time.perf_counter()))
            assert got == [size] * n
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    middle = 0
    for a, b in windows:
        if b - a >= 0.001:
            q = (b - a) / 4
            middle += sum(1 for t in ticks if a + q < t < b - q)
    assert any(b - a >= 0.001 for a, b in windows), f"calls too short to judge: {windows}"
    assert middle > 0, "no other Python thread ran during the calls: the GIL was held"
    assert store.unregister_buffer(pool.ptr) == 0
