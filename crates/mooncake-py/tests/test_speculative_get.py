"""get() through a warm location cache over TCP: the reader reads a remembered
object while its lookup runs and keeps the bytes only when the lookup names the same
allocation, so a value removed or replaced by another client is never returned."""

import os


def test_get_with_a_warm_cache_never_returns_old_bytes(make_cluster, monkeypatch):
    monkeypatch.setenv("MOONCAKE_DISABLE_SHM", "1")
    # One small store: a value put again lands where the old one was.
    c = make_cluster(stores=1, segment="16mb")
    w, r = c.new_store(), c.new_store()
    try:
        old, new = os.urandom(4096), os.urandom(4096)
        assert w.put("k", old) == 0
        for _ in range(3):  # the first learns the location, the others speculate
            assert r.get("k") == old
        assert w.remove("k", True) == 0
        assert r.get("k") == b"", "removed: a miss, not the old bytes"
        assert w.put("k", old) == 0
        assert r.get("k") == old
        assert w.remove("k", True) == 0
        assert w.put("k", new) == 0
        assert r.get("k") == new
        assert r.get("k") == new
        longer = os.urandom(10_000)
        assert w.remove("k", True) == 0
        assert w.put("k", longer) == 0
        assert r.get("k") == longer
        # One slice (1 MiB) goes out on a lane too: the same refusal of a replaced
        # value at the same place.
        big_old, big_new = os.urandom(1 << 20), os.urandom(1 << 20)
        assert w.remove("k", True) == 0
        assert w.put("k", big_old) == 0
        for _ in range(2):
            assert r.get("k") == big_old
        stale = r.location_cache_stats()["stale"]
        assert w.remove("k", True) == 0
        assert w.put("k", big_new) == 0
        assert r.get("k") == big_new
        assert r.location_cache_stats()["stale"] == stale + 1, "the old place was read, refused"
    finally:
        w.close()
        r.close()


def test_location_cache_stats_count_hits_misses_and_stale_reads(make_cluster, monkeypatch):
    monkeypatch.setenv("MOONCAKE_DISABLE_SHM", "1")
    c = make_cluster(stores=1, segment="16mb")
    w, r = c.new_store(), c.new_store()
    try:
        old, new = os.urandom(4096), os.urandom(4096)
        assert set(r.location_cache_stats()) == {"hits", "misses", "stale", "entries"}

        # The writer's first get reads where its own put wrote: a hit, not a miss.
        assert w.put("k", old) == 0
        w0 = w.location_cache_stats()
        assert w0["entries"] == 1
        assert w.get("k") == old
        w1 = w.location_cache_stats()
        assert (w1["hits"], w1["misses"]) == (w0["hits"] + 1, w0["misses"])

        # Another client misses once, then hits on every repeat.
        assert r.get("k") == old
        s0 = r.location_cache_stats()
        assert (s0["hits"], s0["misses"], s0["entries"]) == (0, 1, 1)
        for _ in range(3):
            assert r.get("k") == old
        s1 = r.location_cache_stats()
        assert s1["hits"] == s0["hits"] + 3
        assert s1["misses"] == s0["misses"]

        # Removed and put again with other bytes: the remembered location is
        # refused (counted stale) and the new bytes come back.
        assert w.remove("k", True) == 0
        assert w.put("k", new) == 0
        assert r.get("k") == new
        s2 = r.location_cache_stats()
        assert s2["stale"] == s1["stale"] + 1
        assert s2["hits"] == s1["hits"]
        assert r.get("k") == new
        assert r.location_cache_stats()["hits"] == s2["hits"] + 1
    finally:
        w.close()
        r.close()
    assert w.location_cache_stats() == {}, "closed: no counters"


def test_threads_sharing_small_tcp_transfers_each_get_their_own_bytes(make_cluster, monkeypatch):
    # Every byte through the data port: puts and gets of up to one slice (1 MiB) go
    # out on lanes the calling threads drive themselves, several threads at once on
    # the same stores; a 1 MiB + 1 value takes the pooled connections in between.
    import threading

    monkeypatch.setenv("MOONCAKE_DISABLE_SHM", "1")
    c = make_cluster(stores=2, segment="64mb")
    s = c.new_store()
    errors = []

    def worker(t):
        try:
            for i in range(150):
                if i % 25 == 0:
                    size = (1 << 20) + 1
                elif i % 25 == 12:
                    size = (1 << 20) - t
                else:
                    size = 512 + 37 * i + t
                v = os.urandom(size)
                k = f"lanes/{t}/{i}"
                assert s.put(k, v) == 0, k
                for _ in range(2):  # a lookup, then a speculative read
                    got = s.get(k)
                    assert got == v, f"{k}: {len(got)} bytes back, {size} put"
        except AssertionError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert not errors, errors[:3]
        assert s.location_cache_stats()["hits"] >= 4 * 150
    finally:
        s.close()
