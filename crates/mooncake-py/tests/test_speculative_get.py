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
    finally:
        w.close()
        r.close()
