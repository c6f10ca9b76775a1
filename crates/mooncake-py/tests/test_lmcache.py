"""LMCache's usage (CONTRACT §3): setup(dict) with fallback, is_exist as a truth value,
batch_get_into with full-chunk buffers, put_from, put_parts(key, meta, data),
batch_get_buffer as memoryviews, preferred_segment = get_hostname()."""

import json
import urllib.request

from bufs import HostBuf, pattern
from mooncake.store import MooncakeDistributedStore, ReplicateConfig

CHUNK = 256 * 1024


def lmcache_setup(cluster, segment):
    """LMCache tries the dict form first and falls back to positional on TypeError."""
    s = MooncakeDistributedStore()
    cfg = {
        "local_hostname": "127.0.0.1",
        "metadata_server": cluster.metadata,
        "global_segment_size": segment,
        "local_buffer_size": "16MB",
        "protocol": "tcp",
        "rdma_devices": "",
        "master_server_addr": cluster.master,
    }
    try:
        rc = s.setup(cfg)
    except TypeError:
        rc = s.setup("127.0.0.1", cluster.metadata, segment, 16 << 20, "tcp", "",
                     cluster.master)
    assert rc == 0
    return s


def test_dict_setup_and_put_parts(cluster, keyspace):
    s = lmcache_setup(cluster, 0)
    try:
        key = keyspace("parts")
        meta, data = b"META" * 8, pattern(3, CHUNK)
        assert s.put_parts(key, meta, data) == 0
        assert s.get(key) == meta + data
        assert s.get_size(key) == len(meta) + len(data)
        # memoryview and bytearray parts are read in place too
        key2 = keyspace("parts2")
        assert s.put_parts(key2, memoryview(meta), bytearray(data), b"") == 0
        assert s.get(key2) == meta + data
    finally:
        s.close()


def test_is_exist_is_a_truth_value(cluster, keyspace):
    s = lmcache_setup(cluster, 0)
    key = keyspace("x")
    assert not s.is_exist(key)
    assert s.put(key, b"v") == 0
    assert s.is_exist(key) == 1
    s.close()
    # errors are never positive: a closed store answers "no"
    assert s.is_exist(key) <= 0
    assert not s.is_exist(key) > 0


def test_batch_get_into_full_chunk_buffers_returns_real_sizes(store, keyspace):
    sizes = [CHUNK, CHUNK // 3, 1000]
    keys = [keyspace(f"c{i}") for i in range(3)]
    src = HostBuf(sum(sizes))
    assert store.register_buffer(src.ptr, src.size) == 0
    off = 0
    for i, n in enumerate(sizes):
        src.write(off, pattern(i, n))
        assert store.put_from(keys[i], src.ptr + off, n) == 0
        off += n
    dst = HostBuf(3 * CHUNK)
    assert store.register_buffer(dst.ptr, dst.size) == 0
    got = store.batch_get_into(keys, [dst.ptr + i * CHUNK for i in range(3)], [CHUNK] * 3)
    assert got == sizes
    for i, n in enumerate(sizes):
        assert dst.read(i * CHUNK, n) == pattern(i, n)
    missing = store.batch_get_into([keyspace("nope")], [dst.ptr], [CHUNK])
    assert len(missing) == 1 and missing[0] < 0
    assert store.unregister_buffer(dst.ptr) == 0
    assert store.unregister_buffer(src.ptr) == 0


def test_batch_get_buffer_memoryview(store, keyspace):
    keys = [keyspace(f"b{i}") for i in range(3)]
    values = [pattern(i, 1000 * (i + 1)) for i in range(3)]
    for k, v in zip(keys, values):
        assert store.put(k, v) == 0
    handles = store.batch_get_buffer(keys + [keyspace("missing")])
    assert handles[3] is None
    for h, v in zip(handles[:3], values):
        mv = memoryview(h)
        assert mv.nbytes == len(v) == h.size() == len(h)
        assert mv.tobytes() == v
        assert bytes(h) == v
        assert h.ptr() != 0
    single = store.get_buffer(keys[0])
    assert bytes(memoryview(single)) == values[0]
    assert store.get_buffer(keyspace("missing")) is None


def test_preferred_segment_is_own_hostname(cluster, keyspace):
    s = lmcache_setup(cluster, 32 << 20)
    try:
        host = s.get_hostname()
        name, _, port = host.rpartition(":")
        assert name and port.isdigit()
        cfg = ReplicateConfig()
        cfg.preferred_segment = host
        key = keyspace("local")
        assert s.put(key, pattern(1, CHUNK), cfg) == 0
        with urllib.request.urlopen(cluster.url(f"/query_key?key={key}"), timeout=2) as r:
            info = json.loads(r.read())
        assert [rep["segment"] for rep in info["replicas"]] == [host]
        assert s.get(key) == pattern(1, CHUNK)
    finally:
        s.close()
