"""The reference's remaining calls on an embedded store: batch_remove,
get_replica_desc / batch_get_replica_desc, upsert_parts, upsert_batch,
put_from_with_metadata, get_hostname's port range, and get_into_ranges' shapes."""

import time

from bufs import HostBuf, pattern
from conftest import LEASE_MS

from mooncake.store import MooncakeDistributedStore, ReplicaDescriptor, ReplicaStatus

INVALID_PARAMS = -600
OBJECT_NOT_FOUND = -704
OBJECT_HAS_LEASE = -706


def test_batch_remove_answers_per_key(store, keyspace):
    keys = [keyspace(f"k{i}") for i in range(4)]
    for k in keys:
        assert store.put(k, b"v") == 0
    assert store.get(keys[0]) == b"v"  # a lease on keys[0]
    codes = store.batch_remove(keys + [keyspace("none")])
    assert codes[0] == OBJECT_HAS_LEASE
    assert codes[1:4] == [0, 0, 0]
    assert codes[4] == OBJECT_NOT_FOUND
    assert store.batch_remove([keys[0]], force=True) == [0]
    assert store.batch_is_exist(keys) == [0, 0, 0, 0]
    assert store.batch_remove([]) == []
    assert store.batch_remove([""])[0] < 0


def test_replica_descriptions(store, cluster, keyspace):
    k = keyspace("desc")
    assert store.put(k, pattern(1, 4096)) == 0
    descs = store.get_replica_desc(k)
    assert len(descs) == 1 and isinstance(descs[0], ReplicaDescriptor)
    r = descs[0]
    assert r.status == ReplicaStatus.COMPLETE and r.is_memory_replica() and not r.is_disk_replica()
    d = r.get_memory_descriptor().buffer_descriptor
    assert d.size == 4096 and d.buffer_address > 0 and d.transport_endpoint.startswith("127.0.0.1:")
    assert store.get_replica_desc(keyspace("none")) == []
    got = store.batch_get_replica_desc([k, keyspace("none")])
    assert list(got) == [k] and got[k][0].get_memory_descriptor().buffer_descriptor.size == 4096
    closed = MooncakeDistributedStore()
    assert closed.get_replica_desc(k) == [] and closed.batch_get_replica_desc([k]) == {}


def test_upsert_parts_and_batch(store, keyspace):
    k = keyspace("u")
    assert store.put(k, b"old") == 0
    assert store.upsert_parts(k, b"ne", memoryview(b"w")) == 0
    assert store.get(k) == b"new"
    assert store.upsert_parts(keyspace("fresh"), b"a", b"b") == 0
    assert store.upsert_parts(k) == INVALID_PARAMS
    a, b = keyspace("a"), keyspace("b")
    assert store.upsert_batch([a, b], [b"x", b"y"]) == 0
    assert store.upsert_batch([a, b], [b"X", b"YY"]) == 0
    assert store.get_batch([a, b]) == [b"X", b"YY"]
    assert store.upsert_batch([a], [b"1", b"2"]) == INVALID_PARAMS


def test_put_from_with_metadata(store, keyspace):
    buf = HostBuf(8192)
    assert store.register_buffer(buf.ptr, buf.size) == 0
    buf.write(0, b"META")
    buf.write(4096, pattern(3, 1000))
    k = keyspace("m")
    assert store.put_from_with_metadata(k, buf.ptr + 4096, buf.ptr, 1000, 4) == 0
    assert store.get(k) == b"META" + pattern(3, 1000)
    assert store.put_from_with_metadata(keyspace("empty"), buf.ptr, buf.ptr, 0, 0) == 0
    assert store.unregister_buffer(buf.ptr) == 0
    # Memory that is not registered (either buffer) is refused, and nothing is stored.
    other = HostBuf(4096)
    bad = keyspace("unregistered")
    assert store.put_from_with_metadata(bad, other.ptr, other.ptr, 100, 4) == INVALID_PARAMS
    assert store.is_exist(bad) == 0


def test_hostname_without_a_port_is_in_the_engine_range(cluster):
    s = cluster.new_store(hostname="127.0.0.1")
    try:
        host, port = s.get_hostname().rsplit(":", 1)
        assert host == "127.0.0.1" and 12300 <= int(port) <= 14300
    finally:
        s.close()


def test_get_into_ranges_mirrors_the_request(store, keyspace):
    k = keyspace("r")
    assert store.put(k, pattern(4, 1000)) == 0
    buf = HostBuf(4096)
    assert store.register_buffer(buf.ptr, buf.size) == 0
    res = store.get_into_ranges([buf.ptr], [[k, k, k]],
                                [[[0, 10], [], [0]]],      # dst
                                [[[0], [], [0]]],          # src: one short for key 0
                                [[[5, 5], [], [7]]])
    assert res == [[[INVALID_PARAMS], [], [7]]]
    assert store.unregister_buffer(buf.ptr) == 0


def test_put_session_writes_ranges_then_ends(store, keyspace):
    buf = HostBuf(1 << 16)
    assert store.register_buffer(buf.ptr, buf.size) == 0
    v = pattern(6, 3000)
    buf.write(0, v)
    k, r, dup = keyspace("ps"), keyspace("revoked"), keyspace("dup")
    assert store.put(dup, b"here") == 0
    codes = store.batch_put_session_start([k, r, dup, ""], [3000, 100, 10, 10])
    assert codes[0] == 0 and codes[1] == 0 and codes[2] == -705 and codes[3] < 0
    assert store.batch_put_session_start([k], [3000]) == [INVALID_PARAMS]  # open already
    assert store.is_exist(k) == 0  # invisible until the end
    # Two calls, pieces at any offsets, out of order.
    assert store.batch_put_from_multi_buffer_ranges(
        [k], [[buf.ptr + 2000]], [[1000]], [[2000]]) == [0]
    assert store.batch_put_from_multi_buffer_ranges(
        [k, keyspace("nosession")], [[buf.ptr, buf.ptr + 1000], [buf.ptr]],
        [[1000, 1000], [1]], [[0, 1000], [0]]) == [0, INVALID_PARAMS]
    # Outside the object, lists that disagree.
    assert store.batch_put_from_multi_buffer_ranges([k], [[buf.ptr]], [[10]], [[2995]]) == \
        [INVALID_PARAMS]
    assert store.batch_put_from_multi_buffer_ranges([k], [[buf.ptr]], [[10, 1]], [[0]]) == \
        [INVALID_PARAMS]
    assert store.batch_put_session_end([k, keyspace("nosession")]) == [0, INVALID_PARAMS]
    assert store.get(k) == v
    assert store.batch_put_session_revoke([r]) == [0]
    assert store.is_exist(r) == 0
    assert store.unregister_buffer(buf.ptr) == 0


def test_get_session_reads_ranges(store, cluster, keyspace):
    k = keyspace("gs")
    v = pattern(7, 5000)
    assert store.put(k, v) == 0
    buf = HostBuf(8192)
    assert store.register_buffer(buf.ptr, buf.size) == 0
    assert store.batch_get_session_start([k, keyspace("none")]) == [0, OBJECT_NOT_FOUND]
    res = store.batch_get_into_multi_buffer_ranges(
        [k, keyspace("none")], [[buf.ptr, buf.ptr + 100], [buf.ptr]],
        [[100, 50], [1]], [[4900, 0], [0]])
    assert res == [150, INVALID_PARAMS]
    assert buf.read(0, 150) == v[4900:5000] + v[0:50]
    assert store.batch_get_into_multi_buffer_ranges([k], [[buf.ptr]], [[10]], [[4995]]) == \
        [INVALID_PARAMS]
    # After the lease runs out the session answers LEASE_EXPIRED and is dropped.
    time.sleep(LEASE_MS / 1000 + 0.3)
    assert store.batch_get_into_multi_buffer_ranges([k], [[buf.ptr]], [[10]], [[0]]) == [-707]
    assert store.batch_get_into_multi_buffer_ranges([k], [[buf.ptr]], [[10]], [[0]]) == \
        [INVALID_PARAMS]
    assert store.batch_get_session_start([k]) == [0]
    assert store.batch_get_session_end([k]) == 0
    assert store.batch_get_into_multi_buffer_ranges([k], [[buf.ptr]], [[10]], [[0]]) == \
        [INVALID_PARAMS]
    assert store.unregister_buffer(buf.ptr) == 0


def test_extra_segments_are_refused_in_the_reference_shapes(store, cluster, keyspace):
    NOT_SUPPORTED = -1012
    assert store.mount_segment("/dev/shm/none", 16 << 20) == {"ret": NOT_SUPPORTED,
                                                              "segment_ids": []}
    assert store.allocate_and_mount_segment(16 << 20, "tcp") == {
        "ret": NOT_SUPPORTED, "segment_ids": [], "allocated_size": 0}
    assert store.unmount_segment(["x"]) == NOT_SUPPORTED
    assert store.unmount_and_free_segment(["x"], 0) == NOT_SUPPORTED
    # The store is unaffected.
    k = keyspace("after_mount")
    assert store.put(k, b"v") == 0 and store.get(k) == b"v"
