"""vLLM's usage (CONTRACT §3): scatter/gather with batch_put_from_multi_buffers /
batch_get_into_multi_buffers, and -200 (back-pressure) when the pool is full of
objects that cannot be evicted."""

from bufs import HostBuf, pattern
from mooncake.store import ReplicateConfig

NO_AVAILABLE_HANDLE = -200


def test_scatter_gather_round_trip(store, keyspace):
    # Each object is three pieces of different sizes (e.g. K, V and a scale block).
    parts = [32 * 1024, 16 * 1024, 512]
    n = 8
    obj = sum(parts)
    src = HostBuf(n * obj)
    dst = HostBuf(n * obj)
    for b in (src, dst):
        assert store.register_buffer(b.ptr, b.size) == 0
    keys = [keyspace(f"layer{i}") for i in range(n)]
    ptr_lists, size_lists = [], []
    for i in range(n):
        base = i * obj
        src.write(base, pattern(i, obj))
        ptrs, off = [], 0
        for p in parts:
            ptrs.append(src.ptr + base + off)
            off += p
        ptr_lists.append(ptrs)
        size_lists.append(list(parts))
    assert store.batch_put_from_multi_buffers(keys, ptr_lists, size_lists) == [0] * n
    for i in range(n):
        assert store.get(keys[i]) == pattern(i, obj)
    # Gather back with a different split: two halves, written in reverse order.
    half = obj // 2
    dptrs = [[dst.ptr + i * obj + half, dst.ptr + i * obj] for i in range(n)]
    dsizes = [[obj - half, half] for _ in range(n)]
    got = store.batch_get_into_multi_buffers(keys, dptrs, dsizes)
    assert got == [obj] * n
    for i in range(n):
        want = pattern(i, obj)
        assert dst.read(i * obj + half, obj - half) == want[:obj - half]
        assert dst.read(i * obj, half) == want[obj - half:]
    # Mismatched shapes: every entry is INVALID_PARAMS.
    assert store.batch_put_from_multi_buffers(keys, ptr_lists[:-1], size_lists) == [-600] * n
    assert store.batch_get_into_multi_buffers(keys[:1], [[dst.ptr]], [[1, 2]]) == [-600]
    for b in (src, dst):
        assert store.unregister_buffer(b.ptr) == 0


def test_full_pool_of_pinned_objects_gives_back_pressure(make_cluster, keyspace):
    c = make_cluster(stores=1, segment="16mb", via_service_first=False)
    s = c.new_store()
    try:
        value = pattern(5, 1 << 20)
        pinned = ReplicateConfig()
        pinned.with_hard_pin = True
        results = [s.put(keyspace(f"p{i}"), value, pinned) for i in range(24)]
        stored = results.count(0)
        assert 0 < stored <= 16, results
        assert NO_AVAILABLE_HANDLE in results, results
        # Nothing but success and back-pressure: vLLM pauses stores on -200 only.
        assert set(results) <= {0, NO_AVAILABLE_HANDLE}, results
        # Hard-pinned objects are never evicted, so the pool stays full...
        assert s.put(keyspace("late"), value) == NO_AVAILABLE_HANDLE
        # ...and every stored object is still readable.
        for i, r in enumerate(results):
            if r == 0:
                assert s.get(keyspace(f"p{i}")) == value
    finally:
        s.close()
