"""Copy and move tasks (create_copy_task, create_move_task, query_task) against a
real master, two store processes and segment-owning Python stores: the bytes each
new replica holds, reads during a move, and the reference's codes for bad input."""

import json
import os
import threading
import time
import urllib.request

from mooncake.store import QueryTaskResponse, ReplicateConfig, TaskStatus, TaskType

INVALID_PARAMS = -600
OBJECT_NOT_FOUND = -704
TASK_NOT_FOUND = -1400
UNAVAILABLE_IN_CURRENT_STATUS = -1010


def segments(c):
    with urllib.request.urlopen(c.url("/get_all_segments"), timeout=2) as r:
        return [line.strip() for line in r.read().decode().splitlines() if line.strip()]


def replica_segments(store, key):
    return sorted(d.get_memory_descriptor().buffer_descriptor.segment_name
                  for d in store.get_replica_desc(key))


def put_on(store, key, value, segment):
    cfg = ReplicateConfig()
    cfg.preferred_segment = segment
    assert store.put(key, value, cfg) == 0
    assert replica_segments(store, key) == [segment]


def finish(store, task_id, bound_s=30.0):
    """Polls until the task ends (the bound only stops a hung task from hanging the
    run; how long it takes is not asserted)."""
    end = time.monotonic() + bound_s
    while True:
        resp, code = store.query_task(task_id)
        assert code == 0 and isinstance(resp, QueryTaskResponse)
        if resp.status in (TaskStatus.SUCCESS, TaskStatus.FAILED):
            return resp
        assert time.monotonic() < end, f"task still {resp!r}"
        time.sleep(0.1)


def test_copy_makes_replicas_with_the_same_bytes(make_cluster, keyspace):
    c = make_cluster(stores=2, segment="64mb", via_service_first=False)
    stores = segments(c)
    owner = c.new_store(segment="32mb")  # the source: this process's segment
    client = c.new_store()
    try:
        src = owner.get_hostname()
        assert src in segments(c)
        k = keyspace("copy")
        payload = os.urandom(2 * 1024 * 1024 + 5)
        put_on(client, k, payload, src)

        task_id, code = client.create_copy_task(k, stores)
        assert code == 0 and task_id != (0, 0)
        resp = finish(client, task_id)
        assert resp.status == TaskStatus.SUCCESS, resp.message
        assert resp.type == TaskType.REPLICA_COPY and resp.id == task_id
        assert resp.assigned_client != ""
        assert resp.created_at_ms_epoch <= resp.last_updated_at_ms_epoch
        assert replica_segments(client, k) == sorted([src] + stores)

        # A second copy to segments that already hold it adds nothing and succeeds.
        again, code = client.create_copy_task(k, stores[:1])
        assert code == 0
        assert finish(client, again).status == TaskStatus.SUCCESS
        assert replica_segments(client, k) == sorted([src] + stores)

        # The source leaves: what is read now comes from the copies.
        assert owner.close() == 0
        owner = None
        assert replica_segments(client, k) == sorted(stores)
        assert client.get(k) == payload
    finally:
        if owner is not None:
            owner.close()
        client.close()


def test_move_keeps_the_object_readable_and_leaves_one_replica(make_cluster, keyspace):
    c = make_cluster(stores=2, segment="64mb", via_service_first=False)
    a, b = segments(c)
    client = c.new_store()
    reader = c.new_store()
    try:
        k = keyspace("move")
        payload = os.urandom(4 * 1024 * 1024)
        put_on(client, k, payload, a)

        bad_reads, reads, stop = [], [0], threading.Event()

        def read_loop():
            while not stop.is_set():
                got = reader.get(k)
                reads[0] += 1
                if got != payload:
                    bad_reads.append(len(got))

        t = threading.Thread(target=read_loop)
        t.start()
        try:
            task_id, code = client.create_move_task(k, a, b)
            assert code == 0
            resp = finish(client, task_id)
        finally:
            stop.set()
            t.join()
        assert resp.status == TaskStatus.SUCCESS, resp.message
        assert resp.type == TaskType.REPLICA_MOVE
        assert reads[0] > 0 and bad_reads == []
        # Only the target holds it now, so these bytes are the moved ones.
        assert replica_segments(client, k) == [b]
        assert client.get(k) == payload

        # And back, from the store that received it.
        task_id, code = client.create_move_task(k, b, a)
        assert code == 0
        assert finish(client, task_id).status == TaskStatus.SUCCESS
        assert replica_segments(client, k) == [a]
        assert client.get(k) == payload
    finally:
        client.close()
        reader.close()


def test_bad_input_gets_the_reference_codes(make_cluster, keyspace):
    c = make_cluster(stores=2, segment="64mb", via_service_first=False)
    a, b = segments(c)
    client = c.new_store()
    try:
        k = keyspace("bad")
        put_on(client, k, b"v" * 4096, a)
        missing = keyspace("missing")
        # A missing key.
        assert client.create_copy_task(missing, [b]) == ((0, 0), OBJECT_NOT_FOUND)
        assert client.create_move_task(missing, a, b) == ((0, 0), OBJECT_NOT_FOUND)
        # No targets, or a segment nobody mounted.
        assert client.create_copy_task(k, []) == ((0, 0), INVALID_PARAMS)
        assert client.create_copy_task(k, ["127.0.0.1:1"]) == ((0, 0), INVALID_PARAMS)
        assert client.create_move_task(k, a, "127.0.0.1:1") == ((0, 0), INVALID_PARAMS)
        # Source equal to target, or a source that holds no replica.
        assert client.create_move_task(k, a, a) == ((0, 0), INVALID_PARAMS)
        assert client.create_move_task(k, b, a) == ((0, 0), INVALID_PARAMS)
        # Unknown task ids, and things that are not ids.
        assert client.query_task((0, 0)) == (None, TASK_NOT_FOUND)
        assert client.query_task((12345, 67890)) == (None, TASK_NOT_FOUND)
        assert client.query_task("x") == (None, INVALID_PARAMS)
        assert client.query_task((-1, 2)) == (None, INVALID_PARAMS)
        # A target without room: the task fails saying where; the object stays.
        small = c.new_store(segment="8mb")
        try:
            big = keyspace("big")
            payload = os.urandom(12 << 20)
            put_on(client, big, payload, a)
            task_id, code = client.create_copy_task(big, [small.get_hostname()])
            assert code == 0
            resp = finish(client, task_id)
            assert resp.status == TaskStatus.FAILED and small.get_hostname() in resp.message
            assert replica_segments(client, big) == [a] and client.get(big) == payload
        finally:
            small.close()
        # A target being drained (or drained) takes no replicas.
        req = urllib.request.Request(
            c.url("/api/v1/drain_jobs"), method="POST",
            data=json.dumps({"segments": [b]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read())["success"] is True
        assert client.create_copy_task(k, [b]) == ((0, 0), UNAVAILABLE_IN_CURRENT_STATUS)
        assert client.create_move_task(k, a, b) == ((0, 0), UNAVAILABLE_IN_CURRENT_STATUS)
        # Nothing above changed the object.
        assert replica_segments(client, k) == [a]
        assert client.get(k) == b"v" * 4096
    finally:
        client.close()
