#!/usr/bin/env python3
"""Load driver for any implementation of ``mooncake.store.MooncakeDistributedStore``.

Run it with the Python of a venv that has either our wheel (``pip install
crates/mooncake-py``) or the reference wheel (``benches/compare/setup_ref.sh``): it uses
nothing but the public API, so the same file measures both. One JSON line per result
goes to stdout::

    {"impl": "ours", "workload": "get", "size": 1048576, "ops_per_s": ..., "gb_per_s": ...,
     "p50_us": ..., "p99_us": ..., "n": ..., "errors": 0, "elapsed_s": ...}

Workload groups (``--workloads``, comma-separated):

- ``single``: for each ``--sizes`` value, ``put`` of fresh keys for ``--phase-seconds``
  (a put of a stored key writes nothing in either implementation, so every key is new),
  then ``get`` of those keys round-robin; every result's length is checked and the
  first one's bytes.
- ``putget``: for each ``--sizes`` value, for ``--phase-seconds``: a put of a fresh
  key, then at once a get of it (the writer reading back what it just wrote; only the
  get is timed, ``ops_per_s`` counts the pairs). Where the store answers
  ``location_cache_stats()`` the line carries the change in its counters.
- ``batch``: ``batch_put_from`` / ``batch_get_into`` of 32 keys x 512 KiB from and into
  a registered buffer (one op = one batch call).
- ``meta``: ``batch_is_exist`` of 1024 stored keys (``ops_per_s`` counts keys),
  ``is_exist`` of one, ``batch_is_exist_miss`` of 1024 absent keys.
- ``conc``: ``--threads`` threads sharing one client, put then get of 1 MiB values.

Every knob is a flag or a ``KVB_*`` variable: ``--impl/KVB_IMPL`` (a label),
``--master/KVB_MASTER``, ``--metadata/KVB_METADATA``, ``--hostname/KVB_HOSTNAME``,
``--protocol/KVB_PROTOCOL``, ``--segment/KVB_SEGMENT`` (this client's own segment;
0 = a pure client), ``--local-buffer/KVB_LOCAL_BUFFER``, ``--workloads/KVB_WORKLOADS``,
``--sizes/KVB_SIZES``, ``--phase-seconds/KVB_PHASE_SECONDS``, ``--threads/KVB_THREADS``,
``--budget/KVB_BUDGET`` (bytes written per phase before its keys are removed).
"""

import argparse
import ctypes
import json
import mmap
import os
import sys
import threading
import time

from mooncake.store import MooncakeDistributedStore

UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size(text: str) -> int:
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    if t and t[-1] in UNITS:
        return int(float(t[:-1]) * UNITS[t[-1]])
    return int(t)


def env(name, default):
    return os.environ.get(name, default)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default=env("KVB_IMPL", "?"))
    p.add_argument("--master", default=env("KVB_MASTER", "127.0.0.1:50051"))
    p.add_argument("--metadata", default=env("KVB_METADATA", "http://127.0.0.1:8080/metadata"))
    p.add_argument("--hostname", default=env("KVB_HOSTNAME", "127.0.0.1"))
    p.add_argument("--protocol", default=env("KVB_PROTOCOL", "tcp"))
    p.add_argument("--segment", type=size, default=env("KVB_SEGMENT", "0"))
    p.add_argument("--local-buffer", type=size, default=env("KVB_LOCAL_BUFFER", "512mb"))
    p.add_argument("--workloads", default=env("KVB_WORKLOADS", "single,batch,meta,conc"))
    p.add_argument("--sizes", default=env("KVB_SIZES", "4k,64k,1m,4m,32m"))
    p.add_argument("--phase-seconds", type=float, default=float(env("KVB_PHASE_SECONDS", "2.5")))
    p.add_argument("--threads", type=int, default=int(env("KVB_THREADS", "4")))
    p.add_argument("--budget", type=size, default=env("KVB_BUDGET", "256mb"))
    return p.parse_args(argv)


class Recorder:
    """Latencies of one phase; ``emit`` prints its JSON line."""

    def __init__(self, impl, workload, nbytes, per_op=1):
        self.impl, self.workload, self.nbytes, self.per_op = impl, workload, nbytes, per_op
        self.lat, self.errors = [], 0
        self.t0 = time.perf_counter()
        self.lock = threading.Lock()

    def timed(self, fn):
        t = time.perf_counter()
        ok = fn()
        dt = time.perf_counter() - t
        with self.lock:
            self.lat.append(dt)
            if not ok:
                self.errors += 1

    def emit(self, **extra):
        elapsed = time.perf_counter() - self.t0
        lat = sorted(self.lat) or [0.0]
        n = len(self.lat)
        ops = n * self.per_op / elapsed if elapsed > 0 else 0.0
        out = {
            "impl": self.impl, "workload": self.workload, "size": self.nbytes,
            "ops_per_s": round(ops, 1),
            "gb_per_s": round(n * self.nbytes / elapsed / 1e9, 4) if elapsed > 0 else 0.0,
            "p50_us": round(lat[n // 2] * 1e6, 1) if n else None,
            "p99_us": round(lat[min(n - 1, int(n * 0.99))] * 1e6, 1) if n else None,
            "n": n, "errors": self.errors, "elapsed_s": round(elapsed, 3),
        }
        out.update(extra)
        print(json.dumps(out), flush=True)
        return out


def remove_all(store, keys):
    for k in keys:
        try:
            store.remove(k, True)
        except TypeError:
            store.remove(k)


def single(store, a, tag):
    for text in a.sizes.split(","):
        n = size(text)
        value = os.urandom(min(n, 4096)) * (n // min(n, 4096)) + os.urandom(n % min(n, 4096))
        keys = []
        rec = Recorder(a.impl, "put", n)
        deadline = time.perf_counter() + a.phase_seconds
        while time.perf_counter() < deadline and len(keys) * n < a.budget:
            k = f"{tag}-s{n}-{len(keys)}"
            rec.timed(lambda: store.put(k, value) == 0)
            keys.append(k)
        rec.emit()
        rec = Recorder(a.impl, "get", n)
        deadline = time.perf_counter() + a.phase_seconds
        i = 0
        first = True
        while keys and time.perf_counter() < deadline:
            k = keys[i % len(keys)]
            i += 1

            def get():
                nonlocal first
                v = store.get(k)
                if first:
                    first = False
                    return v == value
                return len(v) == n

            rec.timed(get)
        rec.emit()
        remove_all(store, keys)


def cache_stats(store):
    f = getattr(store, "location_cache_stats", None)
    return f() if f else {}


def putget(store, a, tag):
    for text in a.sizes.split(","):
        n = size(text)
        value = os.urandom(min(n, 4096)) * (n // min(n, 4096)) + os.urandom(n % min(n, 4096))
        keys = []
        before = cache_stats(store)
        rec = Recorder(a.impl, "putget", n)
        deadline = time.perf_counter() + a.phase_seconds
        while time.perf_counter() < deadline and len(keys) * n < a.budget:
            k = f"{tag}-pg{n}-{len(keys)}"
            keys.append(k)
            if store.put(k, value) != 0:
                rec.errors += 1
                continue
            rec.timed(lambda: store.get(k) == value)
        after = cache_stats(store)
        rec.emit(**{f"cache_{c}": after[c] - before.get(c, 0) for c in after if c != "entries"})
        remove_all(store, keys)


class Registered:
    """An anonymous mapping registered with the store for the zero-copy calls."""

    def __init__(self, store, nbytes):
        self.map = mmap.mmap(-1, nbytes)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        rc = store.register_buffer(self.addr, nbytes)
        if rc != 0:
            raise RuntimeError(f"register_buffer returned {rc}")


def batch(store, a, tag, reg):
    count, each = 32, 512 << 10
    ptrs = [reg.addr + i * each for i in range(count)]
    sizes = [each] * count
    written = []
    rec = Recorder(a.impl, "batch_put_from", count * each)
    deadline = time.perf_counter() + a.phase_seconds
    r = 0
    while time.perf_counter() < deadline and len(written) * each < a.budget:
        keys = [f"{tag}-b{r}-{i}" for i in range(count)]
        r += 1
        rec.timed(lambda: all(c == 0 for c in store.batch_put_from(keys, ptrs, sizes)))
        written.extend(keys)
    rec.emit(batch=count)
    rec = Recorder(a.impl, "batch_get_into", count * each)
    deadline = time.perf_counter() + a.phase_seconds
    rounds = len(written) // count
    r = 0
    while rounds and time.perf_counter() < deadline:
        keys = written[(r % rounds) * count:(r % rounds + 1) * count]
        r += 1
        rec.timed(lambda: all(c == each for c in store.batch_get_into(keys, ptrs, sizes)))
    rec.emit(batch=count)
    remove_all(store, written)


def meta(store, a, tag):
    keys = [f"{tag}-m{i}" for i in range(1024)]
    for k in keys:
        store.put(k, b"m")
    for name, probe, want in (("batch_is_exist", keys, 1),
                              ("batch_is_exist_miss", [k + "-absent" for k in keys], 0)):
        rec = Recorder(a.impl, name, 0, per_op=len(probe))
        deadline = time.perf_counter() + a.phase_seconds
        while time.perf_counter() < deadline:
            rec.timed(lambda: all(x == want for x in store.batch_is_exist(probe)))
        rec.emit(batch=len(probe))
    rec = Recorder(a.impl, "is_exist", 0)
    deadline = time.perf_counter() + a.phase_seconds
    while time.perf_counter() < deadline:
        rec.timed(lambda: store.is_exist(keys[0]) == 1)
    rec.emit()
    remove_all(store, keys)


def conc(store, a, tag):
    n = 1 << 20
    value = os.urandom(n)
    per_thread = max(1, a.budget // n // a.threads)
    for phase in ("put", "get"):
        rec = Recorder(a.impl, f"conc_{phase}", n)

        def work(t):
            deadline = time.perf_counter() + a.phase_seconds
            for i in range(per_thread):
                if time.perf_counter() >= deadline:
                    break
                k = f"{tag}-c{t}-{i}"
                if phase == "put":
                    rec.timed(lambda: store.put(k, value) in (0,))
                else:
                    rec.timed(lambda: len(store.get(k)) == n)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(a.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rec.emit(threads=a.threads)
    remove_all(store, [f"{tag}-c{t}-{i}" for t in range(a.threads) for i in range(per_thread)])


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    store = MooncakeDistributedStore()
    t = time.perf_counter()
    rc = store.setup(a.hostname, a.metadata, a.segment, a.local_buffer, a.protocol, "", a.master)
    print(json.dumps({"impl": a.impl, "workload": "setup", "rc": rc,
                      "elapsed_s": round(time.perf_counter() - t, 3)}), flush=True)
    if rc != 0:
        print(f"kvbench: setup against {a.master} returned {rc}", file=sys.stderr)
        return 1
    tag = f"kvb{os.getpid()}-{int(time.time())}"
    groups = [w.strip() for w in a.workloads.split(",") if w.strip()]
    unknown = set(groups) - {"single", "putget", "batch", "meta", "conc"}
    if unknown:
        print(f"kvbench: unknown workloads {sorted(unknown)}", file=sys.stderr)
        return 2
    reg = Registered(store, 32 * (512 << 10)) if "batch" in groups else None
    for g in groups:
        if g == "single":
            single(store, a, tag)
        elif g == "putget":
            putget(store, a, tag)
        elif g == "batch":
            batch(store, a, tag, reg)
        elif g == "meta":
            meta(store, a, tag)
        else:
            conc(store, a, tag)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
